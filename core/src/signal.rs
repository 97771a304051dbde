//! The signaling vocabulary of media rooms, carried in `Signal` frames on
//! the chat session (`room` = the group id): one protobuf message per kind
//! (the `Signal.kind` oneof of `samvad.proto`), so a client built from the
//! .proto alone gets every kind and field typed.
//!
//! | kind | from | carries |
//! |---|---|---|
//! | `join` | client | SDP offer (what it publishes; it receives on tracks we offer later) |
//! | `answer` | both | SDP answer to the other side's offer |
//! | `offer` | both | SDP offer: ours when others' tracks come, theirs to publish more |
//! | `leave` | client | nothing |
//! | `mute` | client | [`Mute`]: whose media, for whom |
//! | `layer` | client | [`Layer`]: which simulcast layer of a publisher to get, or [`AUTO_LAYER`] |
//! | `event` | server | [`MediaEvent`] |
//! | `error` | server | [`SignalError`]: a code and a message |

pub use samvad_proto::v1::signal::Kind as SignalKind;
pub use samvad_proto::v1::{
    media_event, Layer, Leave, MediaEvent, Mute, MuteScope, Signal, SignalError,
};

/// The `rid` of a [`Layer`] that leaves the choice to the subscriber's
/// estimated bandwidth (the default).
pub const AUTO_LAYER: &str = "auto";

/// Longest SDP a signal may carry (an SDP with many tracks fits).
pub const MAX_SDP: usize = 64 * 1024;

/// The name of a signal's kind, as the .proto spells it (for errors and
/// logs).
pub fn kind_name(kind: &SignalKind) -> &'static str {
    match kind {
        SignalKind::Join(_) => "join",
        SignalKind::Answer(_) => "answer",
        SignalKind::Offer(_) => "offer",
        SignalKind::Leave(_) => "leave",
        SignalKind::Mute(_) => "mute",
        SignalKind::Layer(_) => "layer",
        SignalKind::Event(_) => "event",
        SignalKind::Error(_) => "error",
    }
}

/// Whether a client may send this kind (`event` and `error` are the
/// server's).
pub fn from_client(kind: &SignalKind) -> bool {
    !matches!(kind, SignalKind::Event(_) | SignalKind::Error(_))
}

/// The SDP a kind carries, if it is one of the three that do.
pub fn sdp(kind: &SignalKind) -> Option<&str> {
    match kind {
        SignalKind::Join(sdp) | SignalKind::Answer(sdp) | SignalKind::Offer(sdp) => Some(sdp),
        _ => None,
    }
}

/// A mute as a signal's kind.
pub fn mute(scope: MuteScope, user: &str, muted: bool) -> SignalKind {
    SignalKind::Mute(Mute {
        scope: scope as i32,
        user: user.into(),
        muted,
    })
}

/// A choice of `user`'s simulcast layer `rid` (or [`AUTO_LAYER`]) as a
/// signal's kind.
pub fn layer(user: &str, rid: &str) -> SignalKind {
    SignalKind::Layer(Layer {
        user: user.into(),
        rid: rid.into(),
    })
}

/// An event as a signal's kind.
pub fn event(kind: media_event::Kind) -> SignalKind {
    SignalKind::Event(MediaEvent { kind: Some(kind) })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn only_events_and_errors_are_the_servers() {
        let from_server = [
            event(media_event::Kind::Joined("ann".into())),
            SignalKind::Error(SignalError::default()),
        ];
        assert!(from_server.iter().all(|k| !from_client(k)));
        let from_clients = [
            SignalKind::Join("v=0".into()),
            SignalKind::Answer("v=0".into()),
            SignalKind::Offer("v=0".into()),
            SignalKind::Leave(Leave {}),
            SignalKind::Mute(Mute::default()),
            SignalKind::Layer(Layer::default()),
        ];
        assert!(from_clients.iter().all(from_client));
        let names: Vec<_> = from_clients.iter().map(kind_name).collect();
        assert_eq!(names, ["join", "answer", "offer", "leave", "mute", "layer"]);
    }

    #[test]
    fn a_mute_has_a_stable_wire_form() {
        let signal = Signal {
            room: "g1".into(),
            from: String::new(),
            kind: Some(SignalKind::Mute(Mute {
                scope: MuteScope::ForMe as i32,
                user: "bob".into(),
                muted: true,
            })),
        };
        let bytes = signal.encode_to_vec();
        // room (1) "g1", then mute (9) {scope 1, user "bob", muted}.
        assert_eq!(
            bytes,
            [0x0a, 2, b'g', b'1', 0x4a, 9, 0x08, 1, 0x12, 3, b'b', b'o', b'b', 0x18, 1]
        );
        assert_eq!(Signal::decode(bytes.as_slice()).unwrap(), signal);
    }
}
