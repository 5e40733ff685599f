//! The JSON log format (`--log-format json`): one object per line,
//! `{"timestamp":..,"level":..,"fields":{..},"target":..}`, the layout of
//! tracing-subscriber's own JSON formatter, with one difference: a field
//! the event declares but has no value for (an `Option` that is `None`, as
//! the access log's `sni` of a client that sent none) is written as
//! `null`, not left out, so that every line of a kind has the same keys.
//! Events from the `log` crate (rustls logs through it) get their own
//! target back, and their `log.*` bookkeeping fields are dropped.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter (give it to `fmt().event_format(..)`).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

/// An event's fields in the order they were recorded.
#[derive(Default)]
struct Fields {
    list: Vec<(&'static str, serde_json::Value)>,
    /// The `log` crate's target of an event that came through `tracing-log`.
    log_target: Option<String>,
}

impl Fields {
    fn put(&mut self, field: &Field, v: serde_json::Value) {
        match field.name() {
            "log.target" => self.log_target = v.as_str().map(str::to_owned),
            name if name.starts_with("log.") => {}
            name => self.list.push((name, v)),
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, v: f64) {
        // NaN and infinities have no JSON number: write them as text.
        let n = serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(v.to_string()));
        self.put(field, n);
    }
    fn record_i64(&mut self, field: &Field, v: i64) {
        self.put(field, v.into());
    }
    fn record_u64(&mut self, field: &Field, v: u64) {
        self.put(field, v.into());
    }
    fn record_bool(&mut self, field: &Field, v: bool) {
        self.put(field, v.into());
    }
    fn record_str(&mut self, field: &Field, v: &str) {
        self.put(field, v.into());
    }
    fn record_error(&mut self, field: &Field, v: &(dyn std::error::Error + 'static)) {
        self.put(field, v.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, v: &dyn fmt::Debug) {
        self.put(field, format!("{v:?}").into());
    }
}

/// Writes `v` as JSON (strings escaped by serde_json).
fn json(w: &mut Writer<'_>, v: &impl serde::Serialize) -> fmt::Result {
    let s = serde_json::to_string(v).map_err(|_| fmt::Error)?;
    w.write_str(&s)
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        for f in meta.fields() {
            let name = f.name();
            if !name.starts_with("log.") && !fields.list.iter().any(|(n, _)| *n == name) {
                fields.list.push((name, serde_json::Value::Null));
            }
        }
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        w.write_str("{\"timestamp\":")?;
        json(&mut w, &ts)?;
        w.write_str(",\"level\":")?;
        json(&mut w, &meta.level().as_str())?;
        w.write_str(",\"fields\":{")?;
        for (i, (k, v)) in fields.list.iter().enumerate() {
            if i > 0 {
                w.write_char(',')?;
            }
            json(&mut w, k)?;
            w.write_char(':')?;
            json(&mut w, v)?;
        }
        w.write_str("},\"target\":")?;
        json(
            &mut w,
            &fields.log_target.as_deref().unwrap_or(meta.target()),
        )?;
        w.write_str("}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn absent_values_are_null_and_numbers_stay_numbers() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            let none: Option<&str> = None;
            tracing::info!(target: "t", sni = none, alpn = Some("h2"), ms = 0.924, n = 3u64, q = "a\"b", "hi");
        });
        let text = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
        let f = &v["fields"];
        assert_eq!(f["message"], "hi");
        assert!(f["sni"].is_null(), "{text}");
        assert!(f.as_object().expect("map").contains_key("sni"), "{text}");
        assert_eq!(f["alpn"], "h2");
        assert_eq!(f["ms"], 0.924);
        assert_eq!(f["n"], 3);
        assert_eq!(f["q"], "a\"b");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "t");
        assert!(text.contains("\"ms\":0.924,"), "{text}");
    }

    #[test]
    fn log_crate_events_keep_their_target_and_drop_log_fields() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            // What tracing-log makes of a `log::warn!` from rustls.
            tracing::event!(
                target: "log",
                tracing::Level::WARN,
                message = "ip sni",
                log.target = "rustls::server::hs",
                log.line = 7u64
            );
        });
        let text = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
        assert_eq!(v["target"], "rustls::server::hs", "{text}");
        assert_eq!(v["fields"].as_object().map(|m| m.len()), Some(1), "{text}");
        assert_eq!(v["level"], "WARN");
    }
}
