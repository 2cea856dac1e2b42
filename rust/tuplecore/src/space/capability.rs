//! Capabilities (the seed's "hookwall"): which lanes a handle may use, and how.
//!
//! A lane is the first field of a tuple. A handle restricted to a set of lanes may only write
//! tuples whose first field is one of them, and may only read or take with templates whose first
//! field is an actual value among them: a wildcard lane could otherwise reach tuples of lanes the
//! handle was never granted.

use super::value::{Field, Value};
use crate::{Error, Result};

/// An operation a capability may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Take,
    Write,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Take => "take",
            Operation::Write => "write",
        }
    }
}

/// Rights of one handle on a space.
#[derive(Debug, Clone, PartialEq)]
pub struct Capability {
    lanes: Option<Vec<Value>>,
    read: bool,
    take: bool,
    write: bool,
}

impl Default for Capability {
    fn default() -> Self {
        Self::unrestricted()
    }
}

impl Capability {
    /// Every lane, every operation.
    pub fn unrestricted() -> Self {
        Capability {
            lanes: None,
            read: true,
            take: true,
            write: true,
        }
    }

    /// A capability limited to `lanes` (all lanes when `None`) and the given operations.
    pub fn new(lanes: Option<Vec<Value>>, read: bool, take: bool, write: bool) -> Self {
        let lanes = lanes.map(|mut v| {
            let mut seen = Vec::with_capacity(v.len());
            v.retain(|x| {
                let dup = seen.contains(x);
                if !dup {
                    seen.push(x.clone());
                }
                !dup
            });
            v
        });
        Capability {
            lanes,
            read,
            take,
            write,
        }
    }

    /// The lanes granted, or `None` for all.
    pub fn lanes(&self) -> Option<&[Value]> {
        self.lanes.as_deref()
    }

    /// Whether `op` is granted on at least one lane.
    pub fn allows(&self, op: Operation) -> bool {
        match op {
            Operation::Read => self.read,
            Operation::Take => self.take,
            Operation::Write => self.write,
        }
    }

    /// The rights both `self` and `other` grant: restricting a handle can only narrow it.
    #[must_use]
    pub fn narrow(&self, other: &Capability) -> Capability {
        let lanes = match (&self.lanes, &other.lanes) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (Some(a), Some(b)) => Some(a.iter().filter(|x| b.contains(x)).cloned().collect()),
        };
        Capability {
            lanes,
            read: self.read && other.read,
            take: self.take && other.take,
            write: self.write && other.write,
        }
    }

    fn denied(op: Operation, detail: String) -> Error {
        Error::Capability {
            operation: op.name(),
            detail,
        }
    }

    fn lane_list(&self) -> String {
        self.lanes.as_ref().map_or_else(String::new, |l| {
            l.iter().map(Value::describe).collect::<Vec<_>>().join(", ")
        })
    }

    /// Check writing `tuple`.
    pub fn check_tuple(&self, op: Operation, tuple: &[Value]) -> Result<()> {
        if !self.allows(op) {
            return Err(Self::denied(
                op,
                "operation not granted to this handle".to_owned(),
            ));
        }
        if let (Some(lanes), Some(first)) = (&self.lanes, tuple.first()) {
            if !lanes.contains(first) {
                return Err(Self::denied(
                    op,
                    format!(
                        "lane {} is not one of [{}]",
                        first.describe(),
                        self.lane_list()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Check reading or taking with `template`.
    pub fn check_template(&self, op: Operation, template: &[Field]) -> Result<()> {
        if !self.allows(op) {
            return Err(Self::denied(
                op,
                "operation not granted to this handle".to_owned(),
            ));
        }
        if let (Some(lanes), Some(first)) = (&self.lanes, template.first()) {
            let ok = matches!(first, Field::Actual(v) if lanes.contains(v));
            if !ok {
                return Err(Self::denied(
                    op,
                    format!(
                        "template lane {} must be one of [{}] (a restricted handle cannot use a \
                         wildcard lane)",
                        first.describe(),
                        self.lane_list()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn lanes_and_rights() {
        let cap = Capability::new(Some(vec![s("jobs"), s("jobs")]), true, false, true);
        assert_eq!(cap.lanes().unwrap().len(), 1);
        assert!(cap
            .check_tuple(Operation::Write, &[s("jobs"), Value::Int(1)])
            .is_ok());
        assert!(cap.check_tuple(Operation::Write, &[s("other")]).is_err());
        assert!(cap
            .check_template(Operation::Read, &[Field::Actual(s("jobs"))])
            .is_ok());
        assert!(cap.check_template(Operation::Read, &[Field::Any]).is_err());
        let err = cap
            .check_template(Operation::Take, &[Field::Actual(s("jobs"))])
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Capability {
                operation: "take",
                ..
            }
        ));
    }

    #[test]
    fn narrowing_intersects() {
        let a = Capability::new(Some(vec![s("a"), s("b")]), true, true, false);
        let b = Capability::new(Some(vec![s("b"), s("c")]), true, false, true);
        let n = a.narrow(&b);
        assert_eq!(n.lanes().unwrap(), &[s("b")]);
        assert!(n.allows(Operation::Read) && !n.allows(Operation::Take));
        assert!(!n.allows(Operation::Write));
        assert_eq!(Capability::unrestricted().narrow(&a), a);
    }
}
