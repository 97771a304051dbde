//! The connection loop: one task per session, whatever the transport.
//!
//! It selects over (a) frames the hub pushes from the bus, (b) server acks
//! whose bus writes completed, (c) the next client frame, and carries out
//! what [`Session`] decides. Sends are pipelined: a session keeps reading
//! while up to [`MAX_IN_FLIGHT`] of its envelopes are being made durable,
//! and their `Accepted` replies go out in order.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use prost::Message;
use samvad_bus::{BoxFuture, Outgoing};
use samvad_core::admission::{admit, Admitted};
use samvad_core::group::Group;
use samvad_proto::bus::{DeliverRecord, EdgeRecord, MediaRecord};
use samvad_proto::v1::{
    client_frame, server_frame, Accepted, ClientFrame, Envelope, ErrorCode, HeadType, ServerFrame,
};
use samvad_store::presence::SessionRoute;

use crate::delivery::DeliveryError;
use crate::hub::SessionHandle;
use crate::inboxes::EdgeInboxes;
use crate::metrics::{CodeLabel, TransportLabel};
use crate::outbox::{Outbox, Taken};
use crate::state::Edge;
use crate::transport::{Datagrams, Transport};
use samvad_api::Groups;
use samvad_core::session::{Action, Context, FrameFault, Session};
use samvad_core::signal::SignalKind;

/// Envelopes of one session being made durable at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// A session that has not said hello by then (and up to half as long
/// again, [`spread`]) is closed.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// `base` plus up to half as long again, drawn per connection. Clients
/// that connected together (a reconnect storm, or thousands of half-open
/// connections from an attacker) then do not all time out in one tick:
/// closing thousands of sockets at once held up the honest sessions on
/// the same worker (bench/RESULTS.md, hostile clients). A fifth more was
/// not enough: 10 000 closed over 2 s still raised others' p99 by a fifth.
pub fn spread(base: Duration) -> Duration {
    base + base.mul_f64(rand::random::<f64>() / 2.0)
}

type Pending = FuturesOrdered<BoxFuture<'static, Option<ServerFrame>>>;

fn encode(frame: &ServerFrame) -> Bytes {
    Bytes::from(frame.encode_to_vec())
}

/// What woke a session: one branch of its `select!`.
enum Wakeup {
    /// Frames pushed to its outbox, or the outbox cut off.
    Queued(Taken),
    /// The reply to the oldest envelope in flight.
    Reply(Option<ServerFrame>),
    /// A datagram, or `None` once the connection takes no more.
    Datagram(Option<Bytes>),
    HelloTimeout,
    /// The client's next frame (or the end of its stream).
    Frame(std::io::Result<Option<Result<ClientFrame, FrameFault>>>),
}

/// A live session's own state, apart from its transport.
struct Live {
    session: Session,
    pending: Pending,
    datagrams_open: bool,
    /// On the heap, and only until the session said hello: an idle session
    /// keeps no timer.
    hello_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Runs one session to its end.
///
/// A plain fn returning an `async move` block, not an `async fn`: an
/// async fn keeps a copy of its arguments beside the locals they are moved
/// into. The task of every idle session is allocated at the size of this
/// future's largest state, so everything but the wait itself (what a
/// wake-up carries, frames being written, the end of the session) runs
/// in boxed futures that exist only while they run: with them inline it
/// was 2.1 KB for a QUIC session and 2.5 KB for a WebSocket one, most of
/// it frames of 300 bytes each kept in slots of their own
/// (bench/RESULTS.md, "Idle sessions, smaller again").
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn run<T: Transport>(
    edge: Arc<Edge>,
    mut transport: T,
    transport_name: &'static str,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let id: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let outbox = Outbox::new(edge.session_queue);
        let datagrams = transport.datagrams();
        edge.hub.insert(
            id.clone(),
            SessionHandle {
                outbox: outbox.clone(),
                datagrams: datagrams.clone(),
            },
        );
        let gauge = edge
            .metrics
            .sessions
            .get_or_create(&TransportLabel {
                transport: transport_name,
            })
            .clone();
        gauge.inc();

        let mut live = Live {
            session: Session::new(id.clone(), edge.session_config.clone(), Instant::now()),
            pending: FuturesOrdered::new(),
            datagrams_open: datagrams.is_some(),
            hello_deadline: Some(Box::pin(tokio::time::sleep(spread(HELLO_TIMEOUT)))),
        };
        let reason = loop {
            let handling = {
                let wakeup = tokio::select! {
                    biased;
                    taken = outbox.take() => Wakeup::Queued(taken),
                    Some(reply) = live.pending.next(), if !live.pending.is_empty() => Wakeup::Reply(reply),
                    datagram = next_datagram(datagrams.as_ref()), if live.datagrams_open => Wakeup::Datagram(datagram),
                    _ = async { live.hello_deadline.as_mut().expect("guarded").await }, if live.hello_deadline.is_some() => Wakeup::HelloTimeout,
                    incoming = transport.recv(), if live.pending.len() < MAX_IN_FLIGHT => Wakeup::Frame(incoming),
                };
                Box::pin(on_wakeup(&edge, &mut transport, &mut live, wakeup))
            };
            if let Err(reason) = handling.await {
                break reason;
            }
        };
        Box::pin(end(edge, transport, live, outbox, id, reason)).await;
        gauge.dec();
    }
}

/// Carries out what woke the session; the reason to end it, if it ends.
async fn on_wakeup<T: Transport>(
    edge: &Arc<Edge>,
    transport: &mut T,
    live: &mut Live,
    wakeup: Wakeup,
) -> Result<(), &'static str> {
    match wakeup {
        Wakeup::Queued(Taken::CutOff) => {
            edge.metrics
                .errors
                .get_or_create(&CodeLabel {
                    code: "slow_consumer".into(),
                })
                .inc();
            let frame = ServerFrame::error(
                ErrorCode::SlowConsumer,
                "session queue full; reconnect and sync",
                "",
            );
            let _ = bounded(edge.write_stall, transport.send(encode(&frame))).await;
            Err("slow consumer")
        }
        // Everything already queued goes out in one write.
        Wakeup::Queued(Taken::Frames(frames)) => {
            bounded(edge.write_stall, write_queued(transport, frames)).await
        }
        Wakeup::Reply(reply) => {
            bounded(
                edge.write_stall,
                write_replies(edge, transport, reply, &mut live.pending),
            )
            .await
        }
        Wakeup::Datagram(None) => {
            live.datagrams_open = false;
            Ok(())
        }
        Wakeup::Datagram(Some(bytes)) => {
            // Only ephemeral frames are taken from datagrams, and only
            // once the session is authenticated: anything that needs an
            // answer or a guarantee goes on the stream.
            let typing = ClientFrame::decode(bytes)
                .ok()
                .filter(|f| matches!(f.kind, Some(client_frame::Kind::Typing(_))));
            match typing {
                Some(frame) if live.session.user().is_some() => {
                    edge.metrics.datagrams_in.inc();
                    on_frame(edge, transport, live, Ok(frame)).await
                }
                _ => {
                    edge.metrics.datagrams_ignored.inc();
                    Ok(())
                }
            }
        }
        Wakeup::HelloTimeout => {
            let frame = ServerFrame::error(ErrorCode::NotAuthenticated, "no hello within 10 s", "");
            let _ = bounded(edge.write_stall, send_reply(edge, transport, &frame)).await;
            Err("hello timeout")
        }
        Wakeup::Frame(Ok(Some(frame))) => {
            let handled = on_frame(edge, transport, live, frame).await;
            if live.session.user().is_some() {
                live.hello_deadline = None;
            }
            handled
        }
        Wakeup::Frame(Ok(None)) => Err("closed by client"),
        Wakeup::Frame(Err(_)) => Err("read failed"),
    }
}

/// Runs one client frame through the session's rules and carries out what
/// they decide.
async fn on_frame<T: Transport>(
    edge: &Arc<Edge>,
    transport: &mut T,
    live: &mut Live,
    frame: Result<ClientFrame, FrameFault>,
) -> Result<(), &'static str> {
    let cx = Context {
        keys: &edge.keys,
        now: Instant::now(),
        now_ms: samvad_core::clock::unix_ms(),
    };
    // Made per frame: an idle session keeps no action buffer.
    let mut actions = Vec::new();
    live.session.on_frame(frame, &cx, &mut actions);
    match bounded(
        edge.write_stall,
        execute(
            edge,
            &live.session,
            transport,
            &mut live.pending,
            &mut actions,
        ),
    )
    .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err("closed by server"),
        Err(reason) => Err(reason),
    }
}

/// The end of a session: the replies still owed, the transport closed,
/// the session taken out of the hub and of presence.
async fn end<T: Transport>(
    edge: Arc<Edge>,
    mut transport: T,
    mut live: Live,
    outbox: Arc<Outbox>,
    id: Arc<str>,
    reason: &'static str,
) {
    if reason == WRITE_STALLED {
        edge.metrics
            .errors
            .get_or_create(&CodeLabel {
                code: "write_stalled".into(),
            })
            .inc();
    }
    // Answer what is already in flight: those envelopes are being made
    // durable, and their senders should learn it if they are still there
    // (unless the peer stopped reading: nothing more is written then).
    while let Some(reply) = live.pending.next().await {
        if let Some(frame) = reply {
            if reason == WRITE_STALLED
                || bounded(edge.write_stall, send_reply(&edge, &mut transport, &frame))
                    .await
                    .is_err()
            {
                break;
            }
        }
    }
    let _ = tokio::time::timeout(edge.write_stall, transport.close()).await;
    edge.hub.remove(&id);
    outbox.close();
    if live.session.used_media() {
        media_session_ended(&edge, &id).await;
    }
    if let Some(user) = live.session.user() {
        edge.presence.unregister(user, &id).await;
    }
    tracing::debug!(session = %id, reason, "session ended");
}

/// Passes a media signal to its room's node, if `user` is a member of the
/// room's group; the refusal to answer otherwise.
async fn forward_signal(
    edge: &Edge,
    session: &str,
    user: &str,
    signal: samvad_proto::v1::Signal,
) -> Option<ServerFrame> {
    if matches!(edge.media, samvad_media::MediaRouting::Off) {
        return Some(ServerFrame::error(
            ErrorCode::UnknownFrame,
            "media is not served here",
            "signal",
        ));
    }
    let group = match edge.directory.groups.get(&signal.room).await {
        Ok(group) => group,
        Err(e) => {
            tracing::error!(error = %e, "group lookup failed");
            return Some(ServerFrame::error(
                ErrorCode::Unavailable,
                "directory unavailable; retry",
                "signal",
            ));
        }
    };
    let Some(member) = group.as_ref().and_then(|g| g.member(user)) else {
        return Some(ServerFrame::error(
            ErrorCode::NotMember,
            format!("not a member of group {:?}", signal.room),
            "signal",
        ));
    };
    let joining = matches!(signal.kind, Some(SignalKind::Join(_)));
    let node = match edge.media.node_for(&signal.room, joining).await {
        Ok(node) => node,
        Err(why) => {
            return Some(ServerFrame::error(
                ErrorCode::Unavailable,
                why.to_string(),
                "signal",
            ))
        }
    };
    let room = signal.room.clone();
    let record = MediaRecord {
        session: session.to_string(),
        edge: edge.session_config.node.to_string(),
        user: user.to_string(),
        may_mute: member.has(samvad_core::group_rules::Right::Mute),
        signal: Some(signal),
    };
    let out = Outgoing::new(
        edge.topics.media(&node),
        room,
        Bytes::from(record.encode_to_vec()),
    );
    match edge.bus.produce(vec![out]).await {
        Ok(()) => None,
        Err(e) => {
            tracing::warn!(error = %e, "media signal produce failed");
            Some(ServerFrame::error(
                ErrorCode::Unavailable,
                "bus unavailable; retry",
                "signal",
            ))
        }
    }
}

/// Tells the media node a session that signaled is gone: it leaves its
/// rooms at once instead of by ICE timeout.
async fn media_session_ended(edge: &Edge, session: &str) {
    let record = MediaRecord {
        session: session.to_string(),
        edge: edge.session_config.node.to_string(),
        // No signal: the session ended.
        ..Default::default()
    };
    let payload = Bytes::from(record.encode_to_vec());
    let outs: Vec<Outgoing> = edge
        .media
        .all_nodes()
        .await
        .iter()
        .map(|node| {
            Outgoing::new(
                edge.topics.media(node),
                session.to_string(),
                payload.clone(),
            )
        })
        .collect();
    if !outs.is_empty() {
        let _ = edge.bus.produce(outs).await;
    }
}

/// The next datagram of the session, if it has a channel for them.
async fn next_datagram(datagrams: Option<&Datagrams>) -> Option<Bytes> {
    match datagrams {
        Some(d) => d.recv().await,
        None => std::future::pending().await,
    }
}

/// Most frames one write carries.
const WRITE_BATCH_FRAMES: usize = 256;

/// The reason of a session whose peer stopped reading.
const WRITE_STALLED: &str = "write stalled";

/// A write that does not finish within `limit` means the peer stopped
/// reading (its socket buffer and our queue are full): the session ends
/// with a reason instead of holding its task and queue forever.
async fn bounded<T>(
    limit: Duration,
    write: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, &'static str> {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err("write failed"),
        Err(_) => Err(WRITE_STALLED),
    }
}

/// Writes the frames taken from the session's outbox, then flushes once.
async fn write_queued<T: Transport>(
    transport: &mut T,
    frames: std::collections::VecDeque<Bytes>,
) -> std::io::Result<()> {
    for frame in frames {
        transport.feed(frame).await?;
    }
    transport.flush().await
}

/// Writes `first` and every further reply that is ready now, in order,
/// then flushes once.
async fn write_replies<T: Transport>(
    edge: &Edge,
    transport: &mut T,
    first: Option<ServerFrame>,
    pending: &mut Pending,
) -> std::io::Result<()> {
    let mut reply = first;
    for _ in 0..WRITE_BATCH_FRAMES {
        if let Some(frame) = &reply {
            count_error(edge, frame);
            transport.feed(encode(frame)).await?;
        }
        match pending.next().now_or_never() {
            Some(Some(next)) => reply = next,
            _ => break,
        }
    }
    transport.flush().await
}

fn count_error(edge: &Edge, frame: &ServerFrame) {
    if let Some(server_frame::Kind::Error(e)) = &frame.kind {
        edge.metrics
            .errors
            .get_or_create(&CodeLabel {
                code: e.code().short_name(),
            })
            .inc();
    }
}

async fn send_reply<T: Transport>(
    edge: &Edge,
    transport: &mut T,
    frame: &ServerFrame,
) -> std::io::Result<()> {
    count_error(edge, frame);
    transport.send(encode(frame)).await
}

/// Why an envelope cannot be accepted, as the error frame to answer: the
/// core's admission rule (`samvad_core::admission`) on the group as the
/// directory has it now (routing checks it again when it fans out), and a
/// chat's recipient must exist. Else the group a group message goes to.
async fn check_recipient(edge: &Edge, env: &Envelope) -> Result<Option<Group>, Box<ServerFrame>> {
    let Some(head) = env.head.as_ref() else {
        return Ok(None);
    };
    let refusal = |code, message: String| Err(Box::new(ServerFrame::error(code, message, &env.id)));
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "directory lookup failed");
        refusal(ErrorCode::Unavailable, "storage unavailable; retry".into())
    };
    let group = if matches!(head.r#type(), HeadType::Group | HeadType::Channel) {
        match edge.directory.groups.get(&head.to).await {
            Ok(group) => group,
            Err(e) => return unavailable(&e),
        }
    } else {
        None
    };
    match admit(env, group.as_ref()) {
        Err(why) => refusal(why.code(), why.to_string()),
        Ok(Admitted::Group(_)) => Ok(group),
        Ok(Admitted::Chat) => match edge.directory.accounts.exists(&head.to).await {
            Ok(true) => Ok(None),
            Ok(false) => refusal(
                ErrorCode::UnknownRecipient,
                format!("no user {:?}", head.to),
            ),
            Err(e) => unavailable(&e),
        },
    }
}

/// Hands `records` to their inboxes; a failure answers the session with
/// `UNAVAILABLE`, in order with its other replies.
fn produce_deliver(edge: &Edge, pending: &mut Pending, records: Vec<DeliverRecord>) {
    let taken = edge.delivery.deliver(&edge.bus, &edge.topics, records);
    pending.push_back(Box::pin(async move {
        match taken.await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "inbox records not taken");
                Some(ServerFrame::error(
                    ErrorCode::Unavailable,
                    "bus unavailable; retry",
                    "",
                ))
            }
        }
    }));
}

/// Carries out the session's actions; `Ok(false)` when it must close.
async fn execute<T: Transport>(
    edge: &Arc<Edge>,
    session: &Session,
    transport: &mut T,
    pending: &mut Pending,
    actions: &mut Vec<Action>,
) -> std::io::Result<bool> {
    for action in actions.drain(..) {
        match action {
            Action::Reply(frame) => send_reply(edge, transport, &frame).await?,
            Action::Accept(env) => {
                let group = match check_recipient(edge, &env).await {
                    Ok(group) => group,
                    Err(refusal) => {
                        send_reply(edge, transport, &refusal).await?;
                        continue;
                    }
                };
                let (id, server_ts) = (env.id.clone(), env.server_ts);
                // Called now, so this session's send order is kept.
                let durable = edge
                    .delivery
                    .accept(&edge.bus, &edge.topics, env, group.as_ref());
                let edge = edge.clone();
                pending.push_back(Box::pin(async move {
                    Some(match durable.await {
                        Ok(()) => {
                            edge.metrics.accepted.inc();
                            ServerFrame::of(server_frame::Kind::Accepted(Accepted {
                                id,
                                server_ts,
                            }))
                        }
                        Err(DeliveryError::Refused(e)) => {
                            ServerFrame::error(e.code(), e.to_string(), id)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "send not made durable");
                            ServerFrame::error(
                                ErrorCode::Unavailable,
                                "unavailable; retry with the same id",
                                id,
                            )
                        }
                    })
                }));
            }
            Action::Deliver(record) => produce_deliver(edge, pending, vec![record]),
            Action::Signal(signal) => {
                let Some(user) = session.user().cloned() else {
                    continue;
                };
                if let Some(refusal) = forward_signal(edge, session.id(), &user, signal).await {
                    send_reply(edge, transport, &refusal).await?;
                }
            }
            Action::Subscription {
                channel,
                subscribe,
                id,
            } => {
                let Some(user) = session.user().cloned() else {
                    continue;
                };
                let edge = edge.clone();
                pending.push_back(Box::pin(async move {
                    let groups =
                        Groups::new(&edge.directory, Arc::new(EdgeInboxes::new(edge.clone())));
                    let outcome =
                        samvad_api::set_subscribed(&groups, &user, &channel, subscribe).await;
                    Some(match outcome {
                        Ok(()) => ServerFrame::of(server_frame::Kind::Accepted(Accepted {
                            id,
                            server_ts: samvad_core::clock::unix_ms(),
                        })),
                        Err(e) => ServerFrame::error(e.session_code(), e.message(), id),
                    })
                }));
            }
            Action::DeliverIfMembers {
                group,
                others,
                records,
                reference,
            } => {
                let members = match (edge.directory.groups.get(&group).await, session.user()) {
                    (Ok(Some(g)), Some(user)) => {
                        Ok(g.is_member(user) && others.iter().all(|o| g.is_member(o)))
                    }
                    (Ok(_), _) => Ok(false),
                    (Err(e), _) => Err(e),
                };
                match members {
                    Ok(true) => produce_deliver(edge, pending, records),
                    Ok(false) => {
                        let frame = ServerFrame::error(
                            ErrorCode::NotMember,
                            format!("not members of group {group:?}"),
                            reference,
                        );
                        send_reply(edge, transport, &frame).await?;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "group lookup failed");
                        let frame = ServerFrame::error(
                            ErrorCode::Unavailable,
                            "storage unavailable; retry",
                            reference,
                        );
                        send_reply(edge, transport, &frame).await?;
                    }
                }
            }
            Action::GoLive => {
                if let Some(user) = session.user() {
                    let route = SessionRoute {
                        session: session.id().clone(),
                        edge: edge.session_config.node.clone(),
                    };
                    if let Err(e) = edge.presence.register(user, route).await {
                        tracing::warn!(error = %e, "session not registered; closing it");
                        let frame = ServerFrame::error(
                            ErrorCode::Unavailable,
                            "presence unavailable; reconnect",
                            "sync",
                        );
                        send_reply(edge, transport, &frame).await?;
                        return Ok(false);
                    }
                }
            }
            Action::Ephemeral { to, frame } => {
                let edge = edge.clone();
                pending.push_back(Box::pin(async move {
                    let users = [to.as_str()];
                    let routes = edge.presence.lookup(&users).await;
                    let frame = encode(&frame);
                    let records: Vec<Outgoing> = routes
                        .get(&to)
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            let rec = EdgeRecord {
                                session: r.session.to_string(),
                                frame: frame.clone(),
                                datagram: true,
                            };
                            Outgoing::new(
                                edge.topics.edge(&r.edge),
                                r.session.to_string(),
                                Bytes::from(rec.encode_to_vec()),
                            )
                        })
                        .collect();
                    if !records.is_empty() {
                        // Ephemeral: a lost typing indicator is not worth an error.
                        let _ = edge.bus.produce(records).await;
                    }
                    None
                }));
            }
            Action::Close => return Ok(false),
        }
    }
    Ok(true)
}
