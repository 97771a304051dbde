//! The signaling vocabulary of media rooms, carried in `Signal` frames on
//! the chat session (`room` = the group id, `kind`, `payload`):
//!
//! | kind | from | payload |
//! |---|---|---|
//! | `join` | client | SDP offer (what it publishes; it receives on tracks we offer later) |
//! | `answer` | both | SDP answer to the other side's offer |
//! | `offer` | both | SDP offer: ours when others' tracks come, theirs to publish more |
//! | `leave` | client | empty |
//! | `mute` | client | JSON [`Mute`] |
//! | `layer` | client | JSON [`Layer`]: which simulcast layer of a publisher to get, or `auto` (by bandwidth, the default) |
//! | `event` | server | JSON [`MediaEvent`] |
//! | `error` | server | JSON `{code, message}` |

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Join,
    Answer,
    Offer,
    Leave,
    Mute,
    Layer,
    Event,
    Error,
}

impl SignalKind {
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "join" => SignalKind::Join,
            "answer" => SignalKind::Answer,
            "offer" => SignalKind::Offer,
            "leave" => SignalKind::Leave,
            "mute" => SignalKind::Mute,
            "layer" => SignalKind::Layer,
            "event" => SignalKind::Event,
            "error" => SignalKind::Error,
            _ => return None,
        })
    }

    /// Whether a client may send this kind (`event` and `error` are the
    /// server's).
    pub fn from_client(self) -> bool {
        !matches!(self, SignalKind::Event | SignalKind::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Join => "join",
            SignalKind::Answer => "answer",
            SignalKind::Offer => "offer",
            SignalKind::Leave => "leave",
            SignalKind::Mute => "mute",
            SignalKind::Layer => "layer",
            SignalKind::Event => "event",
            SignalKind::Error => "error",
        }
    }
}

/// Whose media to mute, for whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MuteScope {
    /// My own media, for everyone.
    Myself,
    /// `user`'s media, for me only.
    ForMe,
    /// `user`'s media, for everyone (the group's `mute` right).
    Everyone,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mute {
    pub scope: MuteScope,
    /// The participant muted (not for `myself`).
    #[serde(default)]
    pub user: String,
    /// False unmutes.
    pub muted: bool,
}

/// The `rid` of a [`Layer`] that leaves the choice to the subscriber's
/// estimated bandwidth (the default).
pub const AUTO_LAYER: &str = "auto";

/// The simulcast layer (`rid`) to get of `user`'s video, or
/// [`AUTO_LAYER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub user: String,
    pub rid: String,
}

/// What the server tells participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MediaEvent {
    /// To a new participant: who is already in the room.
    Participants {
        users: Vec<String>,
    },
    Joined {
        user: String,
    },
    Left {
        user: String,
    },
    /// `user` publishes a track of `kind` (`audio` or `video`).
    Published {
        user: String,
        kind: String,
    },
    /// The next offer carries `user`'s `kind` track on `mid`.
    Track {
        user: String,
        kind: String,
        mid: String,
    },
    Muted {
        user: String,
        by: String,
        muted: bool,
    },
    /// The subscriber's bandwidth now fits layer `rid` of `user`'s video.
    Layer {
        user: String,
        rid: String,
    },
}

impl MediaEvent {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("events serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_ones_do_not_parse() {
        for kind in [
            "join", "answer", "offer", "leave", "mute", "layer", "event", "error",
        ] {
            assert_eq!(SignalKind::parse(kind).unwrap().as_str(), kind);
        }
        assert_eq!(SignalKind::parse("hangup"), None);
    }

    #[test]
    fn events_and_mutes_have_a_stable_json_form() {
        let e = MediaEvent::Muted {
            user: "bob".into(),
            by: "ann".into(),
            muted: true,
        };
        assert_eq!(
            String::from_utf8(e.to_json()).unwrap(),
            r#"{"type":"muted","user":"bob","by":"ann","muted":true}"#
        );
        let m: Mute =
            serde_json::from_str(r#"{"scope":"for_me","user":"bob","muted":true}"#).unwrap();
        assert_eq!(m.scope, MuteScope::ForMe);
        assert!(serde_json::from_str::<Mute>(r#"{"scope":"all","muted":true}"#).is_err());
    }
}
