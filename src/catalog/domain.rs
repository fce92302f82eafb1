//! The parameters a loss takes, as data: each one's name and the values it takes, so that tests
//! and corpus generators can draw valid calls (and junk beside them) without knowing the loss.

/// The values a parameter takes: its JSON type, and for numbers the range valid calls draw from
/// (the anchor may accept more, and values outside are worth trying as rejections).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Domain {
    /// `true` or `false`.
    Bool,
    /// A real number in `[min, max]`.
    Number {
        /// The smallest value drawn.
        min: f64,
        /// The largest value drawn.
        max: f64,
    },
    /// An integer in `[min, max]`.
    Int {
        /// The smallest value drawn.
        min: i64,
        /// The largest value drawn.
        max: i64,
    },
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A list of real numbers in `[min, max]` (one per class, usually).
    NumberList {
        /// The smallest value drawn.
        min: f64,
        /// The largest value drawn.
        max: f64,
    },
    /// A list of integers in `[min, max]` (class indices, usually).
    IntList {
        /// The smallest value drawn.
        min: i64,
        /// The largest value drawn.
        max: i64,
    },
    /// One real number, or a list of them, in `[min, max]` (MONAI's `float | Sequence[float]`).
    NumberOrList {
        /// The smallest value drawn.
        min: f64,
        /// The largest value drawn.
        max: f64,
    },
}

/// One keyword parameter of a loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Param {
    /// PyTorch's (or the library's) keyword name.
    pub name: &'static str,
    /// The values it takes.
    pub domain: Domain,
    /// Whether `null` (Python's `None`) is accepted too.
    pub nullable: bool,
    /// Whether the anchor requires it (it has no default).
    pub required: bool,
}

impl Param {
    /// An optional, non-nullable parameter.
    pub const fn new(name: &'static str, domain: Domain) -> Param {
        Param {
            name,
            domain,
            nullable: false,
            required: false,
        }
    }

    /// The same parameter, accepting `null`.
    pub const fn nullable(self) -> Param {
        Param {
            nullable: true,
            ..self
        }
    }

    /// The same parameter, required.
    pub const fn required(self) -> Param {
        Param {
            required: true,
            ..self
        }
    }
}

/// The reductions of PyTorch's losses.
pub const REDUCTIONS: Domain = Domain::Choice(&["none", "mean", "sum"]);
/// smp's `mode`.
pub const SMP_MODES: Domain = Domain::Choice(&["binary", "multiclass", "multilabel"]);
/// A flag.
pub const BOOL: Domain = Domain::Bool;
/// A class index (or a label that is not a class, such as PyTorch's default −100).
pub const CLASS_INDEX: Domain = Domain::Int { min: -100, max: 4 };
/// A probability-like constant: α, β, label smoothing.
pub const UNIT: Domain = Domain::Number { min: 0.0, max: 1.0 };
/// A focal γ.
pub const GAMMA: Domain = Domain::Number { min: 0.0, max: 4.0 };
/// A small positive guard constant.
pub const EPS: Domain = Domain::Number {
    min: 1e-8,
    max: 1e-3,
};
/// A per-class weight list.
pub const WEIGHTS: Domain = Domain::NumberList { min: 0.0, max: 2.0 };
/// A per-class value or one for all classes.
pub const PER_CLASS: Domain = Domain::NumberOrList { min: 0.0, max: 2.0 };
/// A non-negative factor λ.
pub const LAMBDA: Domain = Domain::Number { min: 0.0, max: 2.0 };
