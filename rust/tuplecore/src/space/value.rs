//! Field values, type tags and template fields, with Linda matching rules.
//!
//! Matching is by type *and* value: `1` matches neither `true` nor `1.0`. Floats compare by
//! value with `-0.0 == 0.0`, and NaN matches NaN (a template must be able to find the tuple it
//! was written from). Integers outside `i64` are kept as their canonical decimal text so every
//! Python `int` can be stored; such a value never equals an `Int` (the ranges do not overlap).

use std::hash::{Hash, Hasher};

use compact_str::CompactString;
use rustc_hash::FxHasher;

/// Most fields a tuple or template may have.
pub const MAX_ARITY: usize = 32;

/// The type of a field. The discriminants are stable: they are packed into signature keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TypeTag {
    None = 1,
    Bool = 2,
    Int = 3,
    Float = 4,
    Str = 5,
    Bytes = 6,
}

impl TypeTag {
    /// The Python name of the type, for messages.
    pub fn name(self) -> &'static str {
        match self {
            TypeTag::None => "None",
            TypeTag::Bool => "bool",
            TypeTag::Int => "int",
            TypeTag::Float => "float",
            TypeTag::Str => "str",
            TypeTag::Bytes => "bytes",
        }
    }
}

/// One field of a stored tuple.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside the `i64` range, as canonical decimal text (e.g. `-1234…`).
    BigInt(Box<str>),
    Float(f64),
    Str(CompactString),
    Bytes(Bytes),
}

/// An immutable byte string stored inline up to [`Bytes::INLINE`] bytes (like `CompactString`
/// does for text), so small payloads cost no heap allocation to store or to free.
#[derive(Clone)]
pub enum Bytes {
    Inline { len: u8, buf: [u8; Bytes::INLINE] },
    Heap(Box<[u8]>),
}

impl Bytes {
    /// Longest byte string kept inline (the variant then fits in a `Value` of 32 bytes).
    pub const INLINE: usize = 22;

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, buf } => &buf[..usize::from(*len)],
            Bytes::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for Bytes {
    fn from(b: &[u8]) -> Self {
        if b.len() <= Self::INLINE {
            let mut buf = [0u8; Self::INLINE];
            buf[..b.len()].copy_from_slice(b);
            Bytes::Inline {
                len: b.len() as u8,
                buf,
            }
        } else {
            Bytes::Heap(b.into())
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(b: Vec<u8>) -> Self {
        if b.len() <= Self::INLINE {
            Self::from(&b[..])
        } else {
            Bytes::Heap(b.into_boxed_slice())
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({:?})", self.as_slice())
    }
}

/// A stored tuple: its fields in order.
pub type Tuple = Box<[Value]>;

impl Value {
    /// The field's type tag (`BigInt` is an `Int`).
    pub fn tag(&self) -> TypeTag {
        match self {
            Value::None => TypeTag::None,
            Value::Bool(_) => TypeTag::Bool,
            Value::Int(_) | Value::BigInt(_) => TypeTag::Int,
            Value::Float(_) => TypeTag::Float,
            Value::Str(_) => TypeTag::Str,
            Value::Bytes(_) => TypeTag::Bytes,
        }
    }

    /// Canonical bit pattern of a float: `-0.0` folds into `0.0` and every NaN into one NaN.
    fn float_bits(f: f64) -> u64 {
        if f == 0.0 {
            0
        } else if f.is_nan() {
            f64::NAN.to_bits()
        } else {
            f.to_bits()
        }
    }

    /// Feed the value (type and content) into a hasher, consistently with `==`.
    pub fn hash_into<H: Hasher>(&self, h: &mut H) {
        match self {
            Value::None => h.write_u8(TypeTag::None as u8),
            Value::Bool(b) => {
                h.write_u8(TypeTag::Bool as u8);
                h.write_u8(u8::from(*b));
            }
            Value::Int(i) => {
                h.write_u8(TypeTag::Int as u8);
                h.write_i64(*i);
            }
            Value::BigInt(s) => {
                h.write_u8(TypeTag::Int as u8 | 0x80);
                s.hash(h);
            }
            Value::Float(f) => {
                h.write_u8(TypeTag::Float as u8);
                h.write_u64(Self::float_bits(*f));
            }
            Value::Str(s) => {
                h.write_u8(TypeTag::Str as u8);
                h.write(s.as_bytes());
                h.write_u8(0xff);
            }
            Value::Bytes(b) => {
                h.write_u8(TypeTag::Bytes as u8);
                h.write(b.as_slice());
                h.write_u8(0xff);
            }
        }
    }

    /// A 64-bit hash of the value alone (used for lane sets).
    pub fn hash64(&self) -> u64 {
        let mut h = FxHasher::default();
        self.hash_into(&mut h);
        h.finish()
    }

    /// A short, bounded description for error messages.
    pub fn describe(&self) -> String {
        let mut s = match self {
            Value::None => "None".to_owned(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
            Value::Int(i) => i.to_string(),
            Value::BigInt(s) => s.to_string(),
            Value::Float(f) => format!("{f:?}"),
            Value::Str(s) => format!("{:?}", s.as_str()),
            Value::Bytes(b) => format!("<{} bytes>", b.as_slice().len()),
        };
        if s.len() > 60 {
            let cut = (0..=57).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            s.truncate(cut);
            s.push_str("...");
        }
        s
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::BigInt(a), Value::BigInt(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => Self::float_bits(*a) == Self::float_bits(*b),
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a.as_slice() == b.as_slice(),
            _ => false,
        }
    }
}

impl Eq for Value {}

/// One position of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Matches a value equal to this one and of the same type.
    Actual(Value),
    /// Matches any value of this type.
    Formal(TypeTag),
    /// Matches any value.
    Any,
}

/// A template: one [`Field`] per position.
pub type Template = Box<[Field]>;

impl Field {
    /// Does this position accept `value`?
    #[inline]
    pub fn accepts(&self, value: &Value) -> bool {
        match self {
            Field::Actual(v) => v == value,
            Field::Formal(t) => *t == value.tag(),
            Field::Any => true,
        }
    }

    /// Does this position accept every value of type `tag`, some of them, or none?
    #[inline]
    pub fn admits_tag(&self, tag: TypeTag) -> bool {
        match self {
            Field::Actual(v) => v.tag() == tag,
            Field::Formal(t) => *t == tag,
            Field::Any => true,
        }
    }

    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Field::Actual(v) => v.describe(),
            Field::Formal(t) => t.name().to_owned(),
            Field::Any => "ANY".to_owned(),
        }
    }
}

/// Does `template` match `tuple` (same arity, every position accepts its field)?
#[inline]
pub fn matches(template: &[Field], tuple: &[Value]) -> bool {
    template.len() == tuple.len() && template.iter().zip(tuple).all(|(f, v)| f.accepts(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_different_type_never_matches() {
        let one = Value::Int(1);
        assert!(!Field::Actual(one.clone()).accepts(&Value::Bool(true)));
        assert!(!Field::Actual(one.clone()).accepts(&Value::Float(1.0)));
        assert!(Field::Actual(one.clone()).accepts(&Value::Int(1)));
        assert!(!Field::Formal(TypeTag::Int).accepts(&Value::Bool(true)));
        assert!(Field::Formal(TypeTag::Int).accepts(&Value::BigInt("99999999999999999999".into())));
    }

    #[test]
    fn float_equality_is_canonical() {
        assert_eq!(Value::Float(0.0), Value::Float(-0.0));
        assert_eq!(Value::Float(f64::NAN), Value::Float(-f64::NAN));
        assert_eq!(Value::Float(0.0).hash64(), Value::Float(-0.0).hash64());
        assert_ne!(Value::Float(1.0), Value::Float(1.000_000_1));
    }

    #[test]
    fn describe_is_bounded_and_char_safe() {
        let long = Value::Str("é".repeat(100).into());
        assert!(long.describe().len() <= 63);
    }

    #[test]
    fn bytes_inline_and_heap_compare_by_content() {
        assert_eq!(std::mem::size_of::<Value>(), 32);
        let small = Value::Bytes(Bytes::from(&b"abc"[..]));
        assert!(matches!(small, Value::Bytes(Bytes::Inline { .. })));
        let big: Vec<u8> = (0..100).collect();
        let heap = Value::Bytes(Bytes::from(big.clone()));
        assert!(matches!(heap, Value::Bytes(Bytes::Heap(_))));
        assert_eq!(heap, Value::Bytes(Bytes::from(&big[..])));
        assert_ne!(small, heap);
        let edge = vec![7u8; Bytes::INLINE];
        assert_eq!(Bytes::from(edge.clone()).as_slice(), &edge[..]);
        assert_eq!(
            Value::Bytes(Bytes::from(&b""[..])).hash64(),
            Value::Bytes(Bytes::from(Vec::new())).hash64()
        );
    }
}
