//! What is wrong with input parsed at the edge: [`FieldError`] names the field and never
//! quotes the input, so it may be answered to a client, logged and put in dead-letter
//! attributes alike.

use std::fmt;

/// Longest [`JsonProblem`], in characters.
const MAX_PROBLEM_CHARS: usize = 200;

/// How the object parser words a repeated key (see [`UniqueKeys`]); [`JsonProblem`] keeps
/// errors that start so, since the parser never quotes the input in them.
pub(crate) const DUPLICATE_KEY: &str = "duplicate key";

/// What is wrong with bytes that should have been JSON, said without quoting any of them,
/// so that it may be logged, answered and put in dead-letter attributes whatever the input
/// was: `serde_json`'s own words for a syntax error (fixed texts), or, for content of the
/// wrong kind (whose `serde_json` error may quote the input), only the kind and what was
/// expected; then the line and column. At most 200 characters besides
/// the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonProblem(String);

impl JsonProblem {
    /// The input-free description of `e`.
    pub fn of(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let text = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let words = text.strip_suffix(position.as_str()).unwrap_or(&text);
        let what = match e.classify() {
            Category::Syntax | Category::Eof => words.to_owned(),
            Category::Data => wrong_content(words),
            Category::Io => "the input could not be read".to_owned(),
        };
        let mut out: String = what.chars().take(MAX_PROBLEM_CHARS).collect();
        if e.line() > 0 {
            out.push_str(&position);
        }
        JsonProblem(out)
    }
}

impl fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An input-free version of serde's words for content of the wrong kind. Serde puts input
/// only inside quotes or backticks, after a fixed word for its kind (such as `string "…"`);
/// field names in `missing field` and `duplicate field` are the type's own.
fn wrong_content(words: &str) -> String {
    let own = [DUPLICATE_KEY, "missing field `", "duplicate field `"];
    if own.iter().any(|prefix| words.starts_with(prefix)) {
        return words.to_owned();
    }
    for kind in ["invalid type", "invalid value", "invalid length"] {
        let Some(rest) = words.strip_prefix(kind) else {
            continue;
        };
        // The last one: the input, which comes before it, may hold the same words.
        let Some((found, expected)) = rest.rsplit_once(", expected ") else {
            break;
        };
        let found = found.trim_start_matches([':', ' ']);
        let found = found.split(['`', '"']).next().unwrap_or_default().trim();
        return if !found.is_empty() && found.chars().all(|c| c.is_ascii_alphabetic() || c == ' ') {
            format!("{kind}: {found}, expected {expected}")
        } else {
            format!("{kind}, expected {expected}")
        };
    }
    "content of a kind that cannot be read here".to_owned()
}

/// A field of a message that could not be accepted, and why. Its `Display` names the field,
/// so it can be shown to the client as is, and never quotes the input (see
/// [`JsonProblem`]), so it can be logged too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The bytes are not one JSON object.
    #[error("body is not a JSON object: {0}")]
    NotJson(JsonProblem),
    /// The object is larger than the limit given.
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    /// A required field is absent (or null).
    #[error("field `{0}` is required")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A field has the right type but an unacceptable value.
    #[error("field `{field}` {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The client sent a field that the saga sets itself.
    #[error("field `{0}` is set by the saga and must not be sent")]
    Reserved(String),
    /// The order fits [`MAX_ORDER_BYTES`](crate::wire::message::MAX_ORDER_BYTES), but the saga's messages would grow past
    /// [`MAX_MESSAGE_BYTES`](crate::wire::message::MAX_MESSAGE_BYTES) on the way (numbers are re-written in full, and every step adds
    /// its status), and a later step could not read them.
    #[error(
        "the order's saga messages would grow to {would_be} bytes on the way, over the {limit}-byte \
         limit of a saga message: send fewer or shorter extra fields (numbers such as 1e15 are \
         re-written in full, as 1000000000000000.0)"
    )]
    WouldGrowTooLarge {
        /// The size of the largest message the saga could carry.
        would_be: usize,
        /// [`MAX_MESSAGE_BYTES`](crate::wire::message::MAX_MESSAGE_BYTES).
        limit: usize,
    },
}

impl FieldError {
    /// The field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            FieldError::NotJson(_) | FieldError::TooLarge(_) | FieldError::WouldGrowTooLarge { .. } => None,
            FieldError::Missing(f)
            | FieldError::WrongType { field: f, .. }
            | FieldError::Invalid { field: f, .. } => Some(f),
            FieldError::Reserved(f) => Some(f),
        }
    }

    /// A short machine-readable code for the problem.
    pub fn code(&self) -> &'static str {
        match self {
            FieldError::NotJson(_) => "malformed_json",
            FieldError::TooLarge(_) | FieldError::WouldGrowTooLarge { .. } => "too_large",
            FieldError::Missing(_) => "missing_field",
            FieldError::WrongType { .. } => "wrong_type",
            FieldError::Invalid { .. } => "invalid_value",
            FieldError::Reserved(_) => "reserved_field",
        }
    }
}
