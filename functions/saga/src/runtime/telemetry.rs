//! Logging: readable text on a terminal, Cloud Logging JSON on Cloud Run.
//!
//! JSON lines are written by tracing-stackdriver (`severity`, `message`, `time`, source
//! location, `httpRequest` from `http_request.*` fields). Each line is then completed with
//! what ties a saga together, taken from the spans it was logged in: `uuid`, the service
//! name, and the trace (`logging.googleapis.com/trace`, `logging.googleapis.com/spanId`).
//!
//! tracing-stackdriver could add the trace fields itself only through its `opentelemetry`
//! feature, which pins opentelemetry 0.22 and tracing-opentelemetry 0.23, while the Google
//! client libraries already bring 0.33 and 0.34: two copies of the same stack, and a tracer
//! pipeline to run, only to print two ids. The saga already carries its trace context (see
//! [`crate::wire::trace`]), so the ids are taken from span fields instead.

use crate::contract::Service;
use crate::runtime::config::{LogFormat, env};
use serde_json::{Map, Value};
use std::io::{self, Write};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Log levels unless `RUST_LOG` says otherwise: the saga at INFO, the chatty client
/// libraries only when something is wrong.
pub const DEFAULT_FILTER: &str = "info,firestore=warn,gcloud_sdk=warn,google_cloud_pubsub=warn,google_cloud_gax=warn,h2=warn,hyper=warn,tower_http=warn";

/// The filter to use: `RUST_LOG`, or [`DEFAULT_FILTER`].
pub fn filter() -> EnvFilter {
    EnvFilter::try_from_env(env::RUST_LOG).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Installs the global subscriber for `service` of `project`. Later calls do nothing, so
/// tests that start several services in one process can all call it.
pub fn init(service: Service, project: &str, format: LogFormat) {
    let registry = tracing_subscriber::registry().with(filter());
    let result = match format {
        LogFormat::Json => registry
            .with(SagaFieldsLayer)
            .with(tracing_stackdriver::layer().with_writer(JsonLines::new(service, project, io::stdout)))
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service = service.name(), "logging initialised");
    }
}

/// The fields of a span that identify a saga and its place in the trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SagaFields {
    /// The saga.
    pub uuid: Option<String>,
    /// The trace (32 hex digits).
    pub trace_id: Option<String>,
    /// The span (16 hex digits).
    pub span_id: Option<String>,
}

impl SagaFields {
    fn is_empty(&self) -> bool {
        self.uuid.is_none() && self.trace_id.is_none() && self.span_id.is_none()
    }

    /// Fills what is still missing from `outer` (a span further out).
    fn inherit(&mut self, outer: &SagaFields) {
        self.uuid = self.uuid.take().or_else(|| outer.uuid.clone());
        self.trace_id = self.trace_id.take().or_else(|| outer.trace_id.clone());
        self.span_id = self.span_id.take().or_else(|| outer.span_id.clone());
    }
}

impl Visit for SagaFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "uuid" => &mut self.uuid,
            "trace_id" => &mut self.trace_id,
            "span_id" => &mut self.span_id,
            _ => return,
        };
        *slot = Some(value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "uuid" | "trace_id" | "span_id") {
            self.record_str(field, format!("{value:?}").trim_matches('"'));
        }
    }
}

/// Keeps each span's [`SagaFields`] in its extensions, and hands those of each event's
/// spans to [`JsonLines`]. Must be added before the JSON layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SagaFieldsLayer;

impl<S> tracing_subscriber::Layer<S> for SagaFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = SagaFields::default();
        attrs.record(&mut fields);
        if let (false, Some(span)) = (fields.is_empty(), ctx.span(id)) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = SagaFields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(own) = span.extensions().get::<SagaFields>() {
                    fields.inherit(own);
                }
            }
        }
        EVENT_FIELDS.with(|f| *f.borrow_mut() = fields);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SagaFields>() {
            values.record(fields);
        } else {
            let mut fields = SagaFields::default();
            values.record(&mut fields);
            if !fields.is_empty() {
                extensions.insert(fields);
            }
        }
    }
}

std::thread_local! {
    /// The saga fields of the event being written on this thread. Set by
    /// [`SagaFieldsLayer::on_event`], which runs just before the JSON layer formats and
    /// writes the same event on the same thread; taken by [`JsonLines`]. (The writer cannot
    /// look the span up itself: inside an event, the dispatcher is not reachable again.)
    static EVENT_FIELDS: std::cell::RefCell<SagaFields> = std::cell::RefCell::default();
}

fn take_event_fields() -> SagaFields {
    EVENT_FIELDS.with(std::cell::RefCell::take)
}

/// A writer of JSON log lines that adds the saga fields of the current span to each line.
#[derive(Debug, Clone)]
pub struct JsonLines<W> {
    service: &'static str,
    project: String,
    inner: W,
}

impl<W> JsonLines<W> {
    /// Lines of `service` in `project`, written to `inner`.
    pub fn new(service: Service, project: &str, inner: W) -> Self {
        JsonLines {
            service: service.name(),
            project: project.to_owned(),
            inner,
        }
    }

    fn complete(&self, line: &[u8]) -> Vec<u8> {
        let Ok(mut entry) = serde_json::from_slice::<Map<String, Value>>(line) else {
            return line.to_vec();
        };
        let fields = take_event_fields();
        entry.entry("service").or_insert_with(|| self.service.into());
        if let Some(uuid) = fields.uuid {
            entry.entry("uuid").or_insert(uuid.into());
        }
        if let Some(trace) = fields.trace_id {
            entry.insert(
                "logging.googleapis.com/trace".into(),
                format!("projects/{}/traces/{trace}", self.project).into(),
            );
        }
        if let Some(span) = fields.span_id {
            entry.insert("logging.googleapis.com/spanId".into(), span.into());
        }
        let mut out = serde_json::to_vec(&entry).unwrap_or_else(|_| line.to_vec());
        out.push(b'\n');
        out
    }
}

impl<'a, W: MakeWriter<'a> + 'a> MakeWriter<'a> for JsonLines<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            lines: self,
            buffer: Vec::new(),
            out: self.inner.make_writer(),
        }
    }
}

/// Collects one event's output, completes it and writes it when dropped.
pub struct LineWriter<'a, W: MakeWriter<'a> + 'a> {
    lines: &'a JsonLines<W>,
    buffer: Vec<u8>,
    out: W::Writer,
}

impl<'a, W: MakeWriter<'a> + 'a> Write for LineWriter<'a, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: MakeWriter<'a> + 'a> Drop for LineWriter<'a, W> {
    fn drop(&mut self) {
        let mut out = Vec::with_capacity(self.buffer.len() + 160);
        for line in self.buffer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.extend(self.lines.complete(line));
        }
        let _ = self.out.write_all(&out);
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The JSON lines `service` writes, as Cloud Logging would get them, for what `emit` logs.
    fn json_lines(service: Service, emit: impl FnOnce()) -> (String, Vec<Value>) {
        let capture = Capture::default();
        let sink = capture.clone();
        let subscriber = tracing_subscriber::registry().with(SagaFieldsLayer).with(
            tracing_stackdriver::layer().with_writer(JsonLines::new(service, "proj", move || sink.clone())),
        );
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let lines = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (text, lines)
    }

    #[test]
    fn json_lines_carry_severity_service_uuid_and_trace_of_their_spans() {
        let (text, lines) = json_lines(Service::Orders, || {
            tracing::info!("outside any saga");
            let outer = tracing::info_span!(
                "push",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = "00f067aa0ba902b7",
                uuid = tracing::field::Empty
            );
            let _entered = outer.enter();
            outer.record("uuid", "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
            let inner = tracing::info_span!("inner");
            let _inner = inner.enter();
            tracing::warn!(http_request.status = 503u16, "inside");
        });
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["severity"], "INFO");
        assert_eq!(lines[0]["service"], "orders");
        assert!(lines[0].get("uuid").is_none() && lines[0].get("logging.googleapis.com/trace").is_none());
        assert_eq!(lines[1]["severity"], "WARNING");
        assert_eq!(lines[1]["uuid"], "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
        assert_eq!(
            lines[1]["logging.googleapis.com/trace"],
            "projects/proj/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(lines[1]["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
        assert_eq!(lines[1]["httpRequest"]["status"], 503);
    }

    #[test]
    fn the_sweeps_warnings_reach_cloud_logging_as_terraforms_alert_counts_them() {
        // terraform/monitoring.tf counts them by jsonPayload.message and severity WARNING.
        use crate::contract::sweep::{NOT_ENDED, NOT_LISTED};
        let (text, lines) = json_lines(Service::Janitor, || {
            tracing::warn!(
                uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                why = "w",
                "{}",
                NOT_ENDED
            );
            tracing::warn!(error = "e", "{}", NOT_LISTED);
        });
        assert_eq!(lines.len(), 2, "{text}");
        for (line, message) in lines.iter().zip([NOT_ENDED, NOT_LISTED]) {
            assert_eq!(
                (line["severity"].as_str(), line["message"].as_str()),
                (Some("WARNING"), Some(message)),
                "{line}"
            );
        }
    }
}
