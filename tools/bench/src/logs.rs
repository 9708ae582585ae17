//! The services' own account of a run, read from their text logs: the debug lines the saga
//! library writes for the benchmark, one per Firestore read call (`saga::reads`), per
//! document a successful commit wrote (`saga::writes`), per message published
//! (`saga::publishes`), and per timed call of a step (`saga::timing`, see
//! [`crate::phases`]).
//!
//! The services log with `LOG_FORMAT=text`, without targets, so a line is
//! `TIMESTAMP LEVEL MESSAGE FIELDS`, for example
//! `2026-12-01T14:41:55.340440Z DEBUG written doc="inventory/widget"`. A run notes where
//! each log ends before it starts ([`mark`]) and reads what was added after it ended
//! ([`since`]), so that each run counts only its own lines.

use crate::stack::Stack;
use anyhow::Context as _;
use saga::contract::Service;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;

/// Where each service's log ended when a run began.
pub struct Marks(Vec<(Service, PathBuf, u64)>);

/// Notes where the logs of `stack`'s services (every instance's) end now.
pub fn mark(stack: &Stack) -> anyhow::Result<Marks> {
    stack
        .all_processes()
        .map(|p| {
            let len = std::fs::metadata(&p.log)
                .with_context(|| format!("reading {}", p.log.display()))?
                .len();
            Ok((p.service, p.log.clone(), len))
        })
        .collect::<anyhow::Result<_>>()
        .map(Marks)
}

/// The text each service logged since `marks`, in saga order, its instances' logs one
/// after the other.
pub fn since(marks: &Marks) -> anyhow::Result<Vec<(Service, String)>> {
    let mut out: Vec<(Service, String)> = Vec::new();
    for (service, path, from) in &marks.0 {
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.seek(SeekFrom::Start(*from))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        match out.iter_mut().find(|(s, _)| s == service) {
            Some((_, all)) => all.push_str(&text),
            None => out.push((*service, text.into_owned())),
        }
    }
    out.sort_by_key(|(service, _)| Service::ALL.iter().position(|s| s == service));
    Ok(out)
}

/// One of the lines the library logs for the benchmark.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    /// A successful commit wrote `doc` (a path below the database's documents).
    Written {
        /// When it was written, microseconds since the Unix epoch: Firestore's update time
        /// when the line carries it (`at=`), else when the line was logged.
        at_us: i64,
        /// The document.
        doc: &'a str,
    },
    /// A read call asked for `documents` documents.
    Read {
        /// How many documents it asked for.
        documents: u64,
    },
    /// A message of `bytes` bytes of data was published to `topic`.
    Published {
        /// The topic.
        topic: &'a str,
        /// Bytes of message data.
        bytes: u64,
    },
}

/// Microseconds since the Unix epoch of an RFC 3339 timestamp such as
/// `2026-12-01T14:41:55.340440Z`.
fn micros(timestamp: &str) -> Option<i64> {
    let t: firestore::jiff::Timestamp = timestamp.parse().ok()?;
    Some(t.as_microsecond())
}

/// The value of `name=` in `fields`, up to the next space (or the closing quote when it is
/// quoted).
fn field<'a>(fields: &'a str, name: &str) -> Option<&'a str> {
    let rest = fields
        .match_indices(name)
        .filter(|(i, _)| *i == 0 || fields.as_bytes()[i - 1] == b' ')
        .find_map(|(i, _)| fields[i + name.len()..].strip_prefix('='))?;
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').map(|(v, _)| v),
        None => rest.split_whitespace().next(),
    }
}

/// The event of one text-format log line, if it is one of the benchmark's.
pub fn parse(line: &str) -> Option<Event<'_>> {
    let (timestamp, rest) = line.split_once(' ')?;
    // The level is padded to five characters: ` INFO` and ` WARN` carry an extra space.
    let (level, rest) = rest.trim_start().split_once(' ')?;
    if level != "DEBUG" {
        return None;
    }
    if let Some(fields) = rest.strip_prefix("written ") {
        let at_us = match field(fields, "at") {
            Some(at) => at.parse().ok()?,
            None => micros(timestamp)?,
        };
        return Some(Event::Written {
            at_us,
            doc: field(fields, "doc")?,
        });
    }
    if let Some(fields) = rest.strip_prefix("read ") {
        return Some(Event::Read {
            documents: field(fields, "documents")?.parse().ok()?,
        });
    }
    if let Some(fields) = rest.strip_prefix("published ") {
        return Some(Event::Published {
            topic: field(fields, "topic")?,
            bytes: field(fields, "bytes")?.parse().ok()?,
        });
    }
    None
}

/// The benchmark's lines of one run, added up.
#[derive(Debug, Default)]
pub struct Tally<'a> {
    /// Read calls.
    pub read_calls: u64,
    /// Documents they asked for.
    pub documents_read: u64,
    /// Each document written, with when (microseconds since the Unix epoch).
    pub written: Vec<(i64, &'a str)>,
    /// Messages published.
    pub published: u64,
    /// Their data, bytes.
    pub published_bytes: u64,
    /// Σ max(1000, data bytes): see [`crate::bill::billed_bytes`].
    pub published_billed_bytes: u64,
    /// The largest message data published, bytes.
    pub largest_message: u64,
}

/// Adds up the events in `logs` (each service's text of one run).
pub fn tally(logs: &[(Service, String)]) -> Tally<'_> {
    let mut t = Tally::default();
    for event in logs.iter().flat_map(|(_, text)| text.lines()).filter_map(parse) {
        match event {
            Event::Written { at_us, doc } => t.written.push((at_us, doc)),
            Event::Read { documents } => {
                t.read_calls += 1;
                t.documents_read += documents;
            }
            Event::Published { bytes, .. } => {
                t.published += 1;
                t.published_bytes += bytes;
                t.published_billed_bytes += crate::bill::billed_bytes(bytes);
                t.largest_message = t.largest_message.max(bytes);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_line_gives_the_document_and_when_it_was_written() {
        let line = r#"2026-12-01T14:41:55.340440Z DEBUG written doc="sagas/6d8930d3-863b-434b-b8d2-0a7453493c94/steps/orders""#;
        assert_eq!(
            parse(line),
            Some(Event::Written {
                at_us: 1_796_136_115_340_440,
                doc: "sagas/6d8930d3-863b-434b-b8d2-0a7453493c94/steps/orders"
            })
        );
    }

    #[test]
    fn a_written_line_with_firestores_update_time_is_timed_by_it_not_by_the_log() {
        let line = r#"2026-12-01T14:41:55.340440Z DEBUG written doc="inventory/widget" at=1796136115339001 database="projects/p/databases/(default)""#;
        assert_eq!(
            parse(line),
            Some(Event::Written {
                at_us: 1_796_136_115_339_001,
                doc: "inventory/widget"
            })
        );
        assert_eq!(
            parse(r#"2026-12-01T14:41:55Z DEBUG written doc="x" at=soon"#),
            None
        );
    }

    #[test]
    fn read_and_published_lines_give_their_counts() {
        assert_eq!(
            parse("2026-12-01T14:41:55.292507Z DEBUG read documents=4"),
            Some(Event::Read { documents: 4 })
        );
        assert_eq!(
            parse("2026-12-01T14:41:55.136281Z DEBUG published topic=order-created bytes=159"),
            Some(Event::Published {
                topic: "order-created",
                bytes: 159
            })
        );
    }

    #[test]
    fn other_lines_are_no_events_even_when_they_mention_the_words() {
        for line in [
            r#"2026-12-01T14:41:53.311110Z  WARN push token verification is OFF push_auth="off""#,
            r#"2026-12-01T14:41:55.1Z DEBUG phase="read" ms=1.5"#,
            "2026-12-01T14:41:55.1Z  INFO a message about what was written doc=x",
            "2026-12-01T14:41:55.1Z DEBUG read documents=many",
            "not a log line at all",
            "",
        ] {
            assert_eq!(parse(line), None, "{line}");
        }
    }

    #[test]
    fn a_tally_adds_up_every_services_lines_and_skips_the_rest() {
        let logs = vec![
            (
                Service::Orders,
                "2026-12-01T14:41:55.0Z DEBUG read documents=4\n\
                 2026-12-01T14:41:55.1Z DEBUG written doc=\"inventory/widget\"\n\
                 2026-12-01T14:41:55.2Z DEBUG published topic=order-created bytes=180\n"
                    .to_owned(),
            ),
            (
                Service::Janitor,
                "2026-12-01T14:41:56.0Z  WARN something else\n\
                 2026-12-01T14:41:56.1Z DEBUG read documents=1\n\
                 2026-12-01T14:41:56.2Z DEBUG published topic=compensated bytes=1200\n"
                    .to_owned(),
            ),
        ];
        let t = tally(&logs);
        assert_eq!((t.read_calls, t.documents_read), (2, 5));
        assert_eq!(t.written.len(), 1);
        assert_eq!(t.written[0].1, "inventory/widget");
        assert_eq!((t.published, t.published_bytes), (2, 1380));
        assert_eq!(t.published_billed_bytes, 1000 + 1200);
        assert_eq!(t.largest_message, 1200);
    }

    #[test]
    fn a_field_is_found_by_its_whole_name_only() {
        assert_eq!(field("topic=a bytes=3", "bytes"), Some("3"));
        assert_eq!(field("kbytes=9 bytes=3", "bytes"), Some("3"));
        assert_eq!(field(r#"doc="a b" x=1"#, "doc"), Some("a b"));
        assert_eq!(field("topic=a", "bytes"), None);
        assert_eq!(field(r#"doc="x" database="d" at=5"#, "at"), Some("5"));
        assert_eq!(field("at_most=1 at=2", "at"), Some("2"));
    }
}
