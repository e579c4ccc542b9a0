//! The cryptographic parts of a cluster channel, with no I/O: the key from
//! the shared secret, the handshake's proofs and one connection's sealed
//! frames. Built on `ring` (already in the tree through rustls): PBKDF2 and
//! HMAC-SHA256, HKDF (RFC 5869) and ChaCha20-Poly1305 (RFC 8439).
//! `docs/protocol.md` ("Security") describes the exchange byte by byte.

use std::num::NonZeroU32;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

/// Bytes of each side's handshake nonce.
pub const NONCE_BYTES: usize = 32;

/// Bytes of the sequence number that starts every sealed frame.
pub const SEQ_BYTES: usize = 8;

/// Bytes of the Poly1305 tag that ends every sealed frame.
pub const TAG_BYTES: usize = 16;

/// NOTE: PBKDF2 rounds for the cluster key: 100,000 cost 21 ms once per
/// process on this machine, and make each guess at a short secret from a
/// captured handshake cost as much.
const PBKDF2_ROUNDS: u32 = 100_000;

/// Fixed, so that every process derives the same key from the same secret.
const KEY_SALT: &[u8] = b"aiotest cluster key v2";

/// The key every proof and session key comes from, derived from `--secret`.
#[derive(Clone)]
pub struct ClusterKey(hmac::Key);

impl std::fmt::Debug for ClusterKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    /// PBKDF2-HMAC-SHA256 of the secret (RFC 8018).
    pub fn derive(secret: &str) -> Self {
        let mut bytes = [0u8; 32];
        let rounds = NonZeroU32::new(PBKDF2_ROUNDS).expect("non-zero");
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            KEY_SALT,
            secret.as_bytes(),
            &mut bytes,
        );
        Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    }

    /// The proof that `role` holds the key, bound to both nonces.
    pub fn proof(&self, role: Role, nonce_w: &[u8], nonce_m: &[u8]) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(role.label());
        context.update(nonce_w);
        context.update(nonce_m);
        context.sign().as_ref().to_vec()
    }

    /// Whether `proof` is `role`'s, in constant time.
    pub fn verify(&self, role: Role, nonce_w: &[u8], nonce_m: &[u8], proof: &[u8]) -> bool {
        let mut message = Vec::with_capacity(16 + 2 * NONCE_BYTES);
        message.extend_from_slice(role.label());
        message.extend_from_slice(nonce_w);
        message.extend_from_slice(nonce_m);
        hmac::verify(&self.0, &message, proof).is_ok()
    }

    /// The two directions' keys of one connection (HKDF, salted by both
    /// nonces), seen from `role`: its sending key first.
    fn session_keys(
        &self,
        role: Role,
        nonce_w: &[u8],
        nonce_m: &[u8],
    ) -> (LessSafeKey, LessSafeKey) {
        let ikm = self.proof(Role::Session, nonce_w, nonce_m);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KEY_SALT).extract(&ikm);
        let key = |info: &[u8]| {
            let info = [info];
            let okm = prk
                .expand(&info, &CHACHA20_POLY1305)
                .expect("32 bytes is a valid HKDF length");
            LessSafeKey::new(UnboundKey::from(okm))
        };
        let (w2m, m2w) = (key(b"worker to master"), key(b"master to worker"));
        match role {
            Role::Master => (m2w, w2m),
            _ => (w2m, m2w),
        }
    }
}

/// Who proves, or what a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The master proves it holds the key (the `challenge`).
    Master,
    /// The worker proves it holds the key (the `proof`).
    Worker,
    /// Not a proof: the input of the session keys.
    Session,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Master => b"aiotest master proof",
            Role::Worker => b"aiotest worker proof",
            Role::Session => b"aiotest session keys",
        }
    }
}

/// Fresh random nonce bytes from the operating system.
pub fn nonce(rng: &SystemRandom) -> [u8; NONCE_BYTES] {
    let mut bytes = [0u8; NONCE_BYTES];
    rng.fill(&mut bytes)
        .expect("the system's random source works");
    bytes
}

/// The handshake, before any sealed frame: msgpack maps tagged by `type`,
/// like [`super::super::protocol::Message`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Handshake {
    /// W→M: a fresh nonce; `worker_id` is only for the master's log.
    Hello {
        worker_id: String,
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
    },
    /// M→W: the master's nonce, and its proof over both.
    Challenge {
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
    /// W→M: the worker's proof over both nonces.
    Proof {
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
    },
}

impl Handshake {
    /// A msgpack map with named fields, as [`Message::encode`] writes.
    ///
    /// [`Message::encode`]: super::super::protocol::Message::encode
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("every handshake serializes")
    }

    /// `None` for anything that is not a handshake message.
    pub fn decode(frame: &[u8]) -> Option<Self> {
        rmp_serde::from_slice(frame).ok()
    }
}

/// Why a sealed frame was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Too short, or its tag does not verify under this connection's key.
    Forged,
    /// Its sequence number is not above the last one opened: a replay.
    Replayed { seq: u64, last: u64 },
}

/// One connection's keys and sequence numbers, after the handshake.
pub struct Session {
    send_key: LessSafeKey,
    recv_key: LessSafeKey,
    sent: u64,
    received: u64,
}

impl Session {
    /// The session of the handshake that used these nonces, as `role`.
    pub fn new(key: &ClusterKey, role: Role, nonce_w: &[u8], nonce_m: &[u8]) -> Self {
        let (send_key, recv_key) = key.session_keys(role, nonce_w, nonce_m);
        Self {
            send_key,
            recv_key,
            sent: 0,
            received: 0,
        }
    }

    /// `seq (8 bytes, big-endian) || ciphertext || tag (16 bytes)`, the
    /// sequence number authenticated as associated data.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.sent += 1;
        let header = self.sent.to_be_bytes();
        let mut frame = Vec::with_capacity(SEQ_BYTES + plaintext.len() + TAG_BYTES);
        frame.extend_from_slice(&header);
        frame.extend_from_slice(plaintext);
        let tag = self
            .send_key
            .seal_in_place_separate_tag(
                nonce_for(self.sent),
                Aad::from(header),
                &mut frame[SEQ_BYTES..],
            )
            .expect("a frame under 256 GiB seals");
        frame.extend_from_slice(tag.as_ref());
        frame
    }

    /// The plaintext of a sealed frame, refusing forgeries and replays.
    ///
    /// # Errors
    /// [`OpenError`]; never panics on any input.
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        if frame.len() < SEQ_BYTES + TAG_BYTES {
            return Err(OpenError::Forged);
        }
        let mut header = [0u8; SEQ_BYTES];
        header.copy_from_slice(&frame[..SEQ_BYTES]);
        let seq = u64::from_be_bytes(header);
        if seq <= self.received {
            return Err(OpenError::Replayed {
                seq,
                last: self.received,
            });
        }
        let mut body = frame[SEQ_BYTES..].to_vec();
        let plain_len = self
            .recv_key
            .open_in_place(nonce_for(seq), Aad::from(header), &mut body)
            .map_err(|_| OpenError::Forged)?
            .len();
        body.truncate(plain_len);
        self.received = seq;
        Ok(body)
    }
}

/// A sealed frame starts with its sequence number, whose first byte is 0
/// for the first 2^56 frames; a msgpack map never starts with 0.
pub fn is_sealed(frame: &[u8]) -> bool {
    frame.first() == Some(&0)
}

fn nonce_for(seq: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}
