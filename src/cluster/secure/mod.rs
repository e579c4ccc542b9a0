//! Each side's channels to its peers: the handshake, then sealed frames,
//! under the shared secret; plain msgpack frames without one. Pure state
//! machines: frames in, frames and verdicts out; the master and worker
//! links do the sending.
//!
//! With a secret, a peer is heard only after both sides proved they hold
//! the key (a nonce challenge each way), and every frame after that is
//! encrypted and authenticated under keys of that connection alone, with a
//! sequence number that must grow. A captured frame replayed on another
//! connection does not open; replayed on its own, it is refused by number.

mod session;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use ring::rand::SystemRandom;

pub use session::{is_sealed, ClusterKey, Handshake, OpenError, Role, Session, NONCE_BYTES};

use super::protocol::{Message, ProtocolError};
use super::transport::PeerId;

/// NOTE: peers that have not authenticated are remembered (to log each once
/// and to finish handshakes) up to this many; past it they are forgotten
/// all at once. 10,000 entries hold about 1 MB.
const MAX_UNAUTHENTICATED_PEERS: usize = 10_000;

/// What the master makes of one frame from a peer.
#[derive(Debug)]
pub enum Inbound {
    /// An authenticated message (or any message, without a secret).
    Message(Message),
    /// A handshake step: send this back to the peer.
    Reply(Vec<u8>),
    /// The handshake completed; the peer's `Ready` follows.
    Authenticated,
    /// Turned away: send `reply` (a plain `refused`); log when `first`.
    Refuse {
        worker_id: String,
        reason: String,
        reply: Vec<u8>,
        first: bool,
    },
    /// A sealed frame from a peer without a session (this master restarted,
    /// or a replay on a new connection): answer `reply` (a plain `rejoin`,
    /// which makes a real worker authenticate again); log when `first`.
    Unknown {
        reason: String,
        reply: Vec<u8>,
        first: bool,
    },
    /// Refused; log `reason` when `first` (once per peer).
    Dropped { reason: String, first: bool },
}

#[derive(Default)]
struct Peer {
    open: Option<Session>,
    /// The handshake under way: the worker's nonce, ours, and the worker's
    /// name for the log.
    pending: Option<([u8; NONCE_BYTES], [u8; NONCE_BYTES], String)>,
    /// Something from this peer was already logged.
    told: bool,
}

/// The master's channels, one per peer (ROUTER identity).
pub struct MasterChannels {
    key: Option<ClusterKey>,
    peers: HashMap<PeerId, Peer>,
    unauthenticated: usize,
    rng: SystemRandom,
}

impl MasterChannels {
    /// Channels that authenticate and encrypt under `key`, or plain ones.
    pub fn new(key: Option<ClusterKey>) -> Self {
        Self {
            key,
            peers: HashMap::new(),
            unauthenticated: 0,
            rng: SystemRandom::new(),
        }
    }

    /// Peers remembered, authenticated or not.
    #[cfg(test)]
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The frame that carries `message` to `peer`; `None` when the peer has
    /// no session (it is not sent).
    pub fn seal(&mut self, peer: &PeerId, message: &Message) -> Option<Vec<u8>> {
        if self.key.is_none() {
            return Some(message.encode());
        }
        let session = self.peers.get_mut(peer)?.open.as_mut()?;
        Some(session.seal(&message.encode()))
    }

    /// The peer disconnected or left: its session ends.
    pub fn forget(&mut self, peer: &PeerId) {
        if let Some(gone) = self.peers.remove(peer) {
            if gone.open.is_none() {
                self.unauthenticated = self.unauthenticated.saturating_sub(1);
            }
        }
    }

    /// Reads one frame from `peer`.
    pub fn open(&mut self, peer: &PeerId, frame: &[u8]) -> Inbound {
        let Some(key) = self.key.clone() else {
            return self.open_plain(peer, frame);
        };
        if is_sealed(frame) {
            return self.open_sealed(peer, frame);
        }
        match Handshake::decode(frame) {
            Some(Handshake::Hello { worker_id, nonce }) => {
                self.on_hello(&key, peer, worker_id, &nonce)
            }
            Some(Handshake::Proof { proof }) => self.on_proof(&key, peer, &proof),
            Some(Handshake::Challenge { .. }) => {
                self.drop(peer, "a worker may not send 'challenge'".into())
            }
            None => {
                let worker_id = match Message::decode(frame) {
                    Ok(Message::Ready { worker_id, .. }) => worker_id,
                    Ok(_) => "an unauthenticated peer".into(),
                    Err(e) => return self.drop(peer, e.to_string()),
                };
                let reason = "this master requires the shared secret: start the worker with \
                              the master's --secret (AIOTEST_SECRET)";
                self.refuse(peer, worker_id, reason.into())
            }
        }
    }

    fn open_plain(&mut self, peer: &PeerId, frame: &[u8]) -> Inbound {
        match Message::decode(frame) {
            Ok(message) => Inbound::Message(message),
            Err(e) => match Handshake::decode(frame) {
                Some(Handshake::Hello { worker_id, .. }) => {
                    let reason = "this master has no shared secret: start it with the worker's \
                                  --secret (AIOTEST_SECRET), or the worker without one";
                    self.refuse(peer, worker_id, reason.into())
                }
                _ => self.drop(peer, e.to_string()),
            },
        }
    }

    fn open_sealed(&mut self, peer: &PeerId, frame: &[u8]) -> Inbound {
        let Some(session) = self.peers.get_mut(peer).and_then(|p| p.open.as_mut()) else {
            let first = self.mark_told(peer);
            return Inbound::Unknown {
                reason: "a sealed message from a peer with no session (a replay, or a worker \
                         of an earlier master): refused, and the peer asked to authenticate"
                    .into(),
                reply: Message::Rejoin.encode(),
                first,
            };
        };
        match open_message(session, frame) {
            Ok(message) => Inbound::Message(message),
            Err(reason) => self.drop(peer, reason),
        }
    }

    fn on_hello(
        &mut self,
        key: &ClusterKey,
        peer: &PeerId,
        worker_id: String,
        nonce_w: &[u8],
    ) -> Inbound {
        let Ok(nonce_w) = <[u8; NONCE_BYTES]>::try_from(nonce_w) else {
            return self.drop(
                peer,
                format!("a hello whose nonce is not {NONCE_BYTES} bytes"),
            );
        };
        // A repeated hello (the worker's heartbeat crossed our challenge)
        // gets the same challenge, so that either answer completes.
        let repeated = match &self.entry(peer).pending {
            Some((w, m, _)) if *w == nonce_w => Some(*m),
            _ => None,
        };
        let nonce_m = repeated.unwrap_or_else(|| session::nonce(&self.rng));
        self.entry(peer).pending = Some((nonce_w, nonce_m, worker_id));
        let proof = key.proof(Role::Master, &nonce_w, &nonce_m);
        Inbound::Reply(
            Handshake::Challenge {
                nonce: nonce_m.to_vec(),
                proof,
            }
            .encode(),
        )
    }

    fn on_proof(&mut self, key: &ClusterKey, peer: &PeerId, proof: &[u8]) -> Inbound {
        let Some((nonce_w, nonce_m, worker_id)) =
            self.peers.get_mut(peer).and_then(|p| p.pending.take())
        else {
            return self.drop(peer, "a proof with no hello before it".into());
        };
        if !key.verify(Role::Worker, &nonce_w, &nonce_m, proof) {
            return self.refuse(peer, worker_id, ProtocolError::BadSignature.to_string());
        }
        let entry = self.entry(peer);
        let was_open = entry.open.is_some();
        entry.open = Some(Session::new(key, Role::Master, &nonce_w, &nonce_m));
        if !was_open {
            self.unauthenticated = self.unauthenticated.saturating_sub(1);
        }
        Inbound::Authenticated
    }

    fn refuse(&mut self, peer: &PeerId, worker_id: String, reason: String) -> Inbound {
        let first = self.mark_told(peer);
        let reply = Message::Refused {
            reason: reason.clone(),
        }
        .encode();
        Inbound::Refuse {
            worker_id,
            reason,
            reply,
            first,
        }
    }

    fn drop(&mut self, peer: &PeerId, reason: String) -> Inbound {
        let first = self.mark_told(peer);
        Inbound::Dropped { reason, first }
    }

    /// Marks the peer as told; true the first time.
    fn mark_told(&mut self, peer: &PeerId) -> bool {
        !std::mem::replace(&mut self.entry(peer).told, true)
    }

    fn entry(&mut self, peer: &PeerId) -> &mut Peer {
        if !self.peers.contains_key(peer) {
            if self.unauthenticated >= MAX_UNAUTHENTICATED_PEERS {
                self.peers.retain(|_, p| p.open.is_some());
                self.unauthenticated = 0;
            }
            self.unauthenticated += 1;
        }
        self.peers.entry(peer.clone()).or_default()
    }
}

/// The message in a sealed frame, or why it was refused (for the log).
fn open_message(session: &mut Session, frame: &[u8]) -> Result<Message, String> {
    let plain = session.open(frame).map_err(|e| match e {
        OpenError::Forged => ProtocolError::BadSignature.to_string(),
        OpenError::Replayed { seq, last } => {
            format!("a replayed message (sequence {seq}, already at {last}): refused")
        }
    })?;
    Message::decode(&plain).map_err(|e| e.to_string())
}

/// What the worker makes of one frame from the master.
#[derive(Debug)]
pub enum WorkerInbound {
    Message(Message),
    /// The master proved it holds the key: send `proof`, then `Ready`.
    Authenticated {
        proof: Vec<u8>,
    },
    /// The master's proof does not verify: send `proof` (so the master can
    /// say so too), then give up: the secrets differ.
    MasterUnproven {
        proof: Vec<u8>,
        reason: String,
    },
    /// A plain `rejoin`: authenticate again (a restarted master asks so).
    Rejoin,
    /// Refused; log `reason` when `first` (once per connection).
    Dropped {
        reason: String,
        first: bool,
    },
}

/// A worker's channel to its master.
pub struct WorkerChannel {
    key: Option<ClusterKey>,
    worker_id: String,
    pending: Option<[u8; NONCE_BYTES]>,
    open: Option<Session>,
    told: bool,
    rng: SystemRandom,
}

impl WorkerChannel {
    /// A channel that proves itself and seals under `key`, or a plain one;
    /// `worker_id` names this worker in its hello (for the master's log).
    pub fn new(key: Option<ClusterKey>, worker_id: String) -> Self {
        Self {
            key,
            worker_id,
            pending: None,
            open: None,
            told: false,
            rng: SystemRandom::new(),
        }
    }

    /// Forgets the session (a new connection, or the master asked).
    pub fn reset(&mut self) {
        self.pending = None;
        self.open = None;
        self.told = false;
    }

    /// What joining sends: `ready` itself, sealed once authenticated, or
    /// the handshake's hello before that (the same hello until answered).
    pub fn join(&mut self, ready: &Message) -> Vec<u8> {
        if self.key.is_none() {
            return ready.encode();
        }
        if let Some(session) = self.open.as_mut() {
            return session.seal(&ready.encode());
        }
        let nonce = *self
            .pending
            .get_or_insert_with(|| session::nonce(&self.rng));
        Handshake::Hello {
            worker_id: self.worker_id.clone(),
            nonce: nonce.to_vec(),
        }
        .encode()
    }

    /// The frame for `message`; `None` before the handshake completed.
    pub fn seal(&mut self, message: &Message) -> Option<Vec<u8>> {
        if self.key.is_none() {
            return Some(message.encode());
        }
        Some(self.open.as_mut()?.seal(&message.encode()))
    }

    /// Reads one frame from the master.
    pub fn open(&mut self, frame: &[u8]) -> WorkerInbound {
        let Some(key) = self.key.clone() else {
            return match Message::decode(frame) {
                Ok(message) => WorkerInbound::Message(message),
                Err(e) => self.drop(e.to_string()),
            };
        };
        if is_sealed(frame) {
            let Some(session) = self.open.as_mut() else {
                return self.drop("a sealed message before the handshake: refused".into());
            };
            return match open_message(session, frame) {
                Ok(message) => WorkerInbound::Message(message),
                Err(reason) => self.drop(reason),
            };
        }
        if let Some(Handshake::Challenge { nonce, proof }) = Handshake::decode(frame) {
            return self.on_challenge(&key, &nonce, &proof);
        }
        match Message::decode(frame) {
            Ok(Message::Rejoin) => WorkerInbound::Rejoin,
            Ok(Message::Refused { reason }) => self.drop(format!(
                "an unauthenticated refusal from the master's address, ignored (this worker has \
                 a secret): {reason}"
            )),
            Ok(other) => self.drop(format!(
                "an unauthenticated '{}' from the master's address: refused",
                other.kind()
            )),
            Err(e) => self.drop(e.to_string()),
        }
    }

    fn on_challenge(&mut self, key: &ClusterKey, nonce_m: &[u8], proof_m: &[u8]) -> WorkerInbound {
        let Some(nonce_w) = self.pending else {
            // A repeated challenge after we authenticated: nothing to do.
            return self.drop("a challenge with no hello pending: ignored".into());
        };
        if nonce_m.len() != NONCE_BYTES {
            return self.drop(format!(
                "a challenge whose nonce is not {NONCE_BYTES} bytes"
            ));
        }
        let proof = Handshake::Proof {
            proof: key.proof(Role::Worker, &nonce_w, nonce_m),
        }
        .encode();
        if !key.verify(Role::Master, &nonce_w, nonce_m, proof_m) {
            return WorkerInbound::MasterUnproven {
                proof,
                reason: "the master could not prove it holds this worker's secret: master and \
                         worker need the same --secret (AIOTEST_SECRET)"
                    .into(),
            };
        }
        self.pending = None;
        self.open = Some(Session::new(key, Role::Worker, &nonce_w, nonce_m));
        WorkerInbound::Authenticated { proof }
    }

    fn drop(&mut self, reason: String) -> WorkerInbound {
        let first = !std::mem::replace(&mut self.told, true);
        WorkerInbound::Dropped { reason, first }
    }
}
