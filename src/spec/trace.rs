//! The conventions a family core computes with, in words: while [`traced`] runs a loss on this
//! thread, each core call records the conventions it was handed (which sums, which ratio, how the
//! losses are averaged, …), so that a description of a loss is what the spec did, never a table
//! written beside it. Outside [`traced`] recording costs one thread-local check.

use std::cell::RefCell;

/// One convention of a loss: what it is about, and its value in words.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Fact {
    /// The convention ("prediction", "sums over", "absent classes", …).
    pub axis: String,
    /// Its value, in words with its numbers ("each image's positions").
    pub value: String,
}

impl Fact {
    /// A fact of `axis` with `value`.
    pub fn new(axis: &str, value: impl Into<String>) -> Fact {
        Fact {
            axis: axis.to_string(),
            value: value.into(),
        }
    }
}

thread_local! {
    static RECORDED: RefCell<Option<Vec<Fact>>> = const { RefCell::new(None) };
}

/// Runs `run` and returns its result with the facts the cores recorded meanwhile, in order.
pub fn traced<T>(run: impl FnOnce() -> T) -> (T, Vec<Fact>) {
    let outer = RECORDED.with(|recorded| recorded.borrow_mut().replace(Vec::new()));
    let result = run();
    let facts = RECORDED.with(|recorded| std::mem::replace(&mut *recorded.borrow_mut(), outer));
    (result, facts.unwrap_or_default())
}

/// Records the facts `facts` makes, when a trace is running on this thread.
pub(crate) fn record(facts: impl FnOnce() -> Vec<Fact>) {
    RECORDED.with(|recorded| {
        if let Some(recorded) = recorded.borrow_mut().as_mut() {
            recorded.extend(facts());
        }
    });
}

/// A number as a reader writes it: the shortest form that reads back the same (1e-5, 0.5, 2).
pub(crate) fn number(value: f64) -> String {
    let plain = format!("{value}");
    let scientific = format!("{value:e}");
    if scientific.len() < plain.len() {
        scientific
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_collects_what_is_recorded_inside_it_only() {
        record(|| vec![Fact::new("outside", "lost")]);
        let ((), facts) = traced(|| {
            record(|| vec![Fact::new("a", "1")]);
            let ((), inner) = traced(|| record(|| vec![Fact::new("b", "2")]));
            assert_eq!(inner, vec![Fact::new("b", "2")]);
        });
        assert_eq!(facts, vec![Fact::new("a", "1")]);
    }

    #[test]
    fn numbers_read_as_written() {
        assert_eq!(number(1e-5), "1e-5");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(5e-6), "5e-6");
    }
}
