//! Before any load: one connection and handshake to the target, then one
//! operation of the workload, so that a bad target is one clear sentence
//! and a non-zero exit, not a summary full of errors. Also tells the
//! summary what the server negotiated.

use crate::error::Error;
use crate::plan::Plan;
use crate::stats::errors::{ErrorClass, TlsFailure};
use crate::tls::{with_resumption, Negotiated};
use crate::workloads::dial::Dialer;
use crate::workloads::{self, OpTimes, Slot};
use std::time::Instant;
use uringtls_runtime::io::{RingOptions, Runtime};

/// Connects once and handshakes, then runs one operation; returns what was
/// negotiated.
pub fn probe(plan: &Plan) -> Result<Negotiated, Error> {
    let rt = Runtime::new(&RingOptions {
        entries: 8,
        ..RingOptions::default()
    })
    .map_err(Error::Runtime)?;
    let dialer = Dialer {
        addr: plan.target.addr,
        name: plan.server_name.clone(),
        config: with_resumption(&plan.tls, 0),
        timeout: plan.timeout,
    };
    rt.block_on(async {
        let mut t = OpTimes::new(Instant::now());
        let negotiated = match dialer.dial(&mut t).await {
            Ok(mut s) => {
                let mut n = Negotiated::of(s.tls());
                n.handshake_bytes_in = s.byte_counts().0;
                let _ = s.close().await;
                n
            }
            Err(class) => return Err(target_error(plan, class, Phase::Handshake)),
        };
        // One real operation: TLS 1.3 finishes the client's handshake before
        // the server has judged it (a missing client certificate is only
        // reported afterwards), and the server may not speak the workload's
        // protocol. An HTTP error status is left to the run's report.
        let mut slot = Slot::new(dialer.clone(), &plan.workload);
        let mut res = workloads::prepare(&plan.workload, &mut slot, &mut t).await;
        // Keep-alive workloads handshake in `prepare`, one-shot ones in `op`
        // (which records the handshake time once it succeeded).
        let mut shook = res.is_ok() && !plan.workload.one_shot();
        if res.is_ok() {
            t.reset(Instant::now());
            res = workloads::op(&plan.workload, &mut slot, &mut t).await;
            shook |= t.handshake.is_some();
        }
        let phase = if shook {
            Phase::AfterHandshake
        } else {
            Phase::Handshake
        };
        match res {
            Ok(()) => Ok(negotiated),
            Err(class) => Err(target_error(plan, class, phase)),
        }
    })
}

fn target_error(plan: &Plan, class: ErrorClass, phase: Phase) -> Error {
    Error::Target {
        explanation: explain(plan, &class, phase),
        class,
    }
}

/// When an error happened, as far as the caller knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting or handshaking.
    Handshake,
    /// The handshake had succeeded: the workload's protocol failed.
    AfterHandshake,
    /// Either (errors counted over a whole run).
    Unknown,
}

/// The hint for a server that does not speak the workload's protocol.
const SERVICE_HINT: &str = "does the server speak this workload's protocol? http/bulk download need an HTTP server, echo/bulk upload an echo server";

/// One sentence: what failed, and what to do about it.
pub fn explain(plan: &Plan, class: &ErrorClass, phase: Phase) -> String {
    let addr = plan.target.addr;
    match (class, phase) {
        (ErrorClass::Closed | ErrorClass::Reset, Phase::AfterHandshake) => format!(
            "{addr} completed the TLS handshake, then closed the connection without answering the {} request ({SERVICE_HINT})",
            plan.name
        ),
        (ErrorClass::Closed | ErrorClass::Reset, Phase::Unknown) => format!(
            "{addr} closed connections before answering: {class} (is it overloaded or stopping? {SERVICE_HINT})"
        ),
        (ErrorClass::Timeout, Phase::AfterHandshake) => format!(
            "{addr} completed the TLS handshake but did not answer the {} request within {:?} (--timeout): {SERVICE_HINT}",
            plan.name, plan.timeout
        ),
        (ErrorClass::Timeout, Phase::Unknown) => format!(
            "operations to {addr} timed out after {:?} (--timeout): is the server overloaded? ({SERVICE_HINT})",
            plan.timeout
        ),
        _ => explain_class(plan, class),
    }
}

fn explain_class(plan: &Plan, class: &ErrorClass) -> String {
    let addr = plan.target.addr;
    match class {
        ErrorClass::Connect(why) => {
            format!("cannot connect to {addr}: {why} (is a TLS server listening there?)")
        }
        ErrorClass::Tls {
            kind: TlsFailure::InvalidCertificate,
            ..
        } => format!(
            "the certificate of {addr} is not trusted ({}): pass --ca FILE with the CA that issued it, or --insecure to skip verification",
            class.tls_reason()
        ),
        ErrorClass::Tls {
            kind: TlsFailure::InvalidMessage,
            ..
        } => format!(
            "{addr} did not answer with TLS ({}): is it a plaintext server? bench-client needs a TLS port",
            class.tls_reason()
        ),
        ErrorClass::Tls { .. } => format!(
            "TLS handshake with {addr} failed: {}",
            class.tls_reason()
        ),
        ErrorClass::TlsAlert(a) => format!(
            "{addr} refused the TLS handshake with alert `{a}`: check --tls, --cipher, --group, --alpn, --sni and the client certificate"
        ),
        ErrorClass::Closed | ErrorClass::Reset => format!(
            "{addr} closed the connection during the TLS handshake: is it a TLS server, and does it accept these TLS settings?"
        ),
        ErrorClass::Timeout => format!(
            "no TLS answer from {addr} within {:?} (--timeout): is it a TLS server?",
            plan.timeout
        ),
        ErrorClass::Protocol(_) | ErrorClass::BadStatus(_) => {
            format!("requests to {addr} failed: {class} ({SERVICE_HINT})")
        }
        ErrorClass::WrongService { .. } => format!(
            "{addr}: {class} (echo and bulk upload need an echo server, such as `uringtls --service echo`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::errors::Unanswered;

    #[test]
    fn a_close_or_timeout_after_the_handshake_is_not_blamed_on_the_handshake() {
        let plan = crate::plan::test_plan();
        for class in [ErrorClass::Closed, ErrorClass::Reset, ErrorClass::Timeout] {
            let during = explain(&plan, &class, Phase::Handshake);
            let after = explain(&plan, &class, Phase::AfterHandshake);
            assert!(during.contains("TLS"), "{during}");
            assert!(after.contains("completed the TLS handshake"), "{after}");
            assert!(after.contains("this workload's protocol"), "{after}");
            assert!(!after.contains("during the TLS handshake"), "{after}");
            let unknown = explain(&plan, &class, Phase::Unknown);
            assert!(!unknown.contains("during the TLS handshake"), "{unknown}");
            assert!(!unknown.contains("no TLS answer"), "{unknown}");
        }
        let wrong = ErrorClass::WrongService {
            protocol: "echo",
            reply: Unanswered::Closed,
        };
        let text = explain(&plan, &wrong, Phase::Handshake);
        assert!(
            text.contains("server closed after the TLS handshake without answering the echo protocol — wrong service?"),
            "{text}"
        );
    }

    #[test]
    fn tls_failures_get_their_hint_from_the_kind_not_from_the_detail_text() {
        let plan = crate::plan::test_plan();
        let tls = |kind, detail: &str| ErrorClass::Tls {
            kind,
            detail: detail.into(),
        };
        let untrusted = explain(
            &plan,
            &tls(TlsFailure::InvalidCertificate, "unknown_issuer"),
            Phase::Handshake,
        );
        assert!(
            untrusted
                .contains("is not trusted (invalid_certificate:unknown_issuer): pass --ca FILE"),
            "{untrusted}"
        );
        let plaintext = explain(
            &plan,
            &tls(TlsFailure::InvalidMessage, "invalid_content_type"),
            Phase::Handshake,
        );
        assert!(
            plaintext.contains("is it a plaintext server?"),
            "{plaintext}"
        );
        // A detail that merely reads like another kind keeps its own kind's text.
        let other = explain(
            &plan,
            &tls(TlsFailure::Other, "invalid_certificate_revocation_list"),
            Phase::Handshake,
        );
        assert!(
            other.ends_with(
                "TLS handshake with 127.0.0.1:1 failed: invalid_certificate_revocation_list"
            ),
            "{other}"
        );
        assert!(!other.contains("--ca"), "{other}");
    }
}
