//! Why a signal was refused: sent back to its session as an `error`
//! signal with the code and the message.

/// Why a signal was refused (sent back as an `error` signal).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("already in this room from this session")]
    AlreadyJoined,
    #[error("not in this room")]
    NotJoined,
    #[error("the SDP does not parse: {0}")]
    BadSdp(String),
    #[error("the offer was refused: {0}")]
    Refused(String),
    #[error("no participant {0:?} in this room")]
    NoSuchParticipant(String),
    #[error("muting others needs the group's mute right")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
}

impl MediaError {
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::AlreadyJoined => "already_joined",
            MediaError::NotJoined => "not_joined",
            MediaError::BadSdp(_) => "bad_sdp",
            MediaError::Refused(_) => "refused",
            MediaError::NoSuchParticipant(_) => "no_such_participant",
            MediaError::Forbidden => "forbidden",
            MediaError::BadRequest(_) => "bad_request",
        }
    }
}
