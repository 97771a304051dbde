//! Which participant an incoming UDP packet is for, without asking every
//! `Rtc` in turn: by the ICE ufrag in a STUN request's USERNAME, and after
//! that by the source address it came from. Plain data, no I/O.
//!
//! The SFU picks each participant's ufrag itself, so the first STUN
//! binding request (USERNAME = `<our ufrag>:<their ufrag>`, RFC 8445 7.2.2)
//! names the participant; the address it came from is learnt then, and
//! DTLS, RTP and RTCP, which carry no ufrag, follow it.

use std::collections::HashMap;
use std::net::SocketAddr;

/// STUN's magic cookie (RFC 5389): tells STUN from DTLS and RTP.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// The local ufrag of a STUN message's USERNAME (`local:remote`), if
/// `packet` is a STUN message that has one.
pub fn stun_local_ufrag(packet: &[u8]) -> Option<&str> {
    if packet.len() < 20 || packet[0] & 0xC0 != 0 || packet[4..8] != MAGIC_COOKIE {
        return None;
    }
    let length = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    let attrs = packet.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let kind = u16::from_be_bytes([attrs[at], attrs[at + 1]]);
        let len = u16::from_be_bytes([attrs[at + 2], attrs[at + 3]]) as usize;
        let value = attrs.get(at + 4..at + 4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// Routes packets to participant ids.
#[derive(Debug, Default)]
pub struct Demux<Id> {
    by_ufrag: HashMap<String, Id>,
    by_addr: HashMap<SocketAddr, Id>,
}

impl<Id: Copy + PartialEq> Demux<Id> {
    pub fn add(&mut self, ufrag: String, id: Id) {
        self.by_ufrag.insert(ufrag, id);
    }

    /// Forgets `id` and every address learnt for it.
    pub fn remove(&mut self, ufrag: &str, id: Id) {
        self.by_ufrag.remove(ufrag);
        self.by_addr.retain(|_, v| *v != id);
    }

    /// The participant `packet` from `source` is for. A STUN request with
    /// a known ufrag also teaches the source address.
    pub fn route(&mut self, source: SocketAddr, packet: &[u8]) -> Option<Id> {
        if let Some(ufrag) = stun_local_ufrag(packet) {
            let id = *self.by_ufrag.get(ufrag)?;
            self.by_addr.insert(source, id);
            return Some(id);
        }
        self.by_addr.get(&source).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request with a USERNAME attribute (and one before it,
    /// to walk past).
    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // SOFTWARE (0x8022), 5 bytes, padded to 8.
        attrs.extend_from_slice(&[0x80, 0x22, 0x00, 0x05]);
        attrs.extend_from_slice(b"str0m\0\0\0");
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut packet = vec![0x00, 0x01];
        packet.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        packet.extend_from_slice(&MAGIC_COOKIE);
        packet.extend_from_slice(&[7; 12]);
        packet.extend_from_slice(&attrs);
        packet
    }

    #[test]
    fn the_ufrag_is_read_from_a_stun_request() {
        assert_eq!(
            stun_local_ufrag(&binding_request("srv1:cli9")),
            Some("srv1")
        );
        // DTLS and RTP are not STUN; truncated STUN is nothing.
        assert_eq!(
            stun_local_ufrag(&[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(stun_local_ufrag(&[0x80, 0x60, 0, 0]), None);
        let mut cut = binding_request("srv1:cli9");
        cut.truncate(30);
        assert_eq!(stun_local_ufrag(&cut), None);
    }

    #[test]
    fn stun_teaches_the_address_the_rest_follows() {
        let mut demux = Demux::default();
        demux.add("a".into(), 1u32);
        demux.add("b".into(), 2u32);
        let (x, y): (SocketAddr, SocketAddr) = (
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:5000".parse().unwrap(),
        );
        assert_eq!(demux.route(x, b"rtp"), None, "unknown address, no ufrag");
        assert_eq!(demux.route(x, &binding_request("b:z")), Some(2));
        assert_eq!(demux.route(x, b"rtp"), Some(2));
        assert_eq!(demux.route(y, &binding_request("nobody:z")), None);
        demux.remove("b", 2);
        assert_eq!(demux.route(x, b"rtp"), None);
        assert_eq!(
            demux.route(x, &binding_request("b:z")),
            None,
            "its ufrag is gone too"
        );
        assert_eq!(demux.route(y, &binding_request("a:z")), Some(1));
    }
}
