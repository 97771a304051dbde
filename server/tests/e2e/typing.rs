//! Typing indicators through the real binary: ephemeral, never stored,
//! and carried by datagrams where the transport has them (native QUIC,
//! WebTransport), by the stream where it does not (WebSocket).

use crate::common::*;
use samvad_client::{Client, TransportKind};
use samvad_proto::v1::{client_frame, server_frame, Ping, Pong, Presence, ServerFrame, Typing};

fn typing(to: &str, chatid: &str) -> client_frame::Kind {
    client_frame::Kind::Typing(Typing {
        to: to.into(),
        chatid: chatid.into(),
        active: true,
    })
}

fn presence(frame: ServerFrame) -> Presence {
    match frame.kind {
        Some(server_frame::Kind::Presence(p)) => p,
        other => panic!("expected presence, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_rides_datagrams_where_the_transport_has_them() {
    let server = TestServer::start();
    let (a, b, c) = server.alice_bob_carol().await;
    let mut alice = server.connect(TransportKind::Quic, &a).await;
    let mut bob = server.connect(TransportKind::Wt, &b).await;
    let mut carol = server.connect(TransportKind::Ws, &c).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        sync_all(client, 0).await;
    }

    // QUIC datagram in, WebTransport datagram out. Datagrams may be lost,
    // so the sender repeats until one arrives, as a typing client does.
    let got = tokio::time::timeout(T, async {
        loop {
            alice.send_datagram(typing("bob", "alice:bob")).unwrap();
            if let Ok(frame) = bob
                .recv_datagram(std::time::Duration::from_millis(300))
                .await
            {
                return presence(frame);
            }
        }
    })
    .await
    .expect("a typing datagram reaches bob");
    assert_eq!(
        (got.user.as_str(), got.typing, got.chatid.as_str()),
        ("alice", true, "alice:bob")
    );

    // To a WebSocket session it falls back to the stream.
    alice.send_datagram(typing("carol", "alice:carol")).unwrap();
    let got = presence(next_of(&mut carol, "presence").await);
    assert_eq!((got.user.as_str(), got.typing), ("alice", true));

    // From a WebSocket session (stream) to a QUIC one: a datagram.
    carol.send(typing("alice", "alice:carol")).await.unwrap();
    let got = presence(alice.recv_datagram(T).await.unwrap());
    assert_eq!(got.user, "carol");

    // Never stored: nothing to replay.
    let (messages, receipts) = sync_all(&mut bob, 0).await;
    assert_eq!((messages.len(), receipts), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_carry_nothing_but_typing_and_only_after_hello() {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    sync_all(&mut bob, 0).await;

    // A message sent as a datagram is dropped: no guarantee could be kept
    // for it. The session goes on.
    let mut alice = server.connect(TransportKind::Quic, &a).await;
    sync_all(&mut alice, 0).await;
    alice
        .send_datagram(client_frame::Kind::Send(samvad_proto::v1::Send {
            envelope: Some(samvad_client::chat("m1", "alice", "bob", "lost")),
        }))
        .unwrap();
    // Before hello, even a typing datagram is dropped.
    let anonymous = Client::open(TransportKind::Wt, &server.addr).await.unwrap();
    anonymous.send_datagram(typing("bob", "alice:bob")).unwrap();
    tokio::time::timeout(T, async {
        while metric(&server, "samvad_datagrams_ignored_total").await < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both datagrams counted as ignored");
    alice
        .send(client_frame::Kind::Ping(Ping { nonce: 7 }))
        .await
        .unwrap();
    let pong = next_of(&mut alice, "pong").await;
    assert!(matches!(
        pong.kind,
        Some(server_frame::Kind::Pong(Pong { nonce: 7 }))
    ));
    // Nothing reached Bob: his next frame is the one sent on the stream.
    send_chat(&mut alice, "m2", "alice", "bob", "kept").await;
    assert_eq!(next_user_message(&mut bob).await.id, "m2");
    // The ignored datagrams were never typing frames of anyone's.
    assert_eq!(metric(&server, "samvad_datagrams_received_total").await, 0);
}
