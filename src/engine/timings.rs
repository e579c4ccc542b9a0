//! Where a request's time went, phase by phase, as k6 reports it
//! (`http_req_blocked` aside): DNS, TCP connect, TLS handshake, waiting for
//! the first response byte, and receiving the rest.

use std::time::{Duration, Instant};

/// A request's phases in µs. A request on a kept connection has zero DNS,
/// connect and TLS time: it skipped them. Response time (issue to last
/// body byte) is measured apart and covers all of them and more (queueing
/// for a connection, writing the request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Resolving the host name (0 for an IP address).
    pub dns_us: u64,
    /// Opening the TCP connection.
    pub connect_us: u64,
    /// The TLS handshake.
    pub tls_us: u64,
    /// From the request sent to the first response byte: time to first
    /// byte as the server's think time plus one round trip.
    pub waiting_us: u64,
    /// From the first response byte to the last body byte.
    pub receiving_us: u64,
}

impl Timings {
    /// The connection phases of `self` with the exchange phases of `other`.
    pub fn then(self, other: Timings) -> Timings {
        Timings {
            waiting_us: other.waiting_us,
            receiving_us: other.receiving_us,
            ..self
        }
    }

    /// Sets the exchange phases from when the request was `sent`, its first
    /// byte came back and its last body byte came back.
    pub fn exchange(sent: Instant, first_byte: Instant, end: Instant) -> Timings {
        Timings {
            waiting_us: micros(first_byte.saturating_duration_since(sent)),
            receiving_us: micros(end.saturating_duration_since(first_byte)),
            ..Timings::default()
        }
    }
}

/// A duration in whole µs.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
