//! Extended reals at the oracle's precision: arbitrary-precision binary floats (`dashu-float`,
//! round-to-nearest-even at [`PRECISION`] bits) plus ±∞ and NaN under IEEE 754's rules, so that a
//! mean over nothing is NaN and a −∞ logit gives p = 0 exactly as the exact arithmetic says.

use std::ops::{Add, Div, Mul, Neg, Sub};

use dashu_float::round::mode::HalfEven;
use dashu_float::FBig;

/// The working precision in bits: 256, so that the rounding of every operation (2⁻²⁵⁶ relative)
/// stays more than 2¹⁹⁰ below an f64 ulp even after the cancellations the formulas keep.
pub const PRECISION: usize = 256;

/// A binary float of [`PRECISION`] bits.
type Big = FBig<HalfEven>;

/// Whether a big float is ±0 (dashu keeps the sign of a zero).
fn is_zero(big: &Big) -> bool {
    big.repr().is_pos_zero() || big.repr().is_neg_zero()
}

/// An extended real number.
#[derive(Debug, Clone, PartialEq)]
pub enum Real {
    /// A finite value, rounded to [`PRECISION`] bits.
    Finite(Big),
    /// +∞.
    PosInf,
    /// −∞.
    NegInf,
    /// Not a number.
    Nan,
}

impl Real {
    /// The value of an f64 (exact: 53 bits fit).
    pub fn from_f64(value: f64) -> Real {
        if value.is_nan() {
            Real::Nan
        } else if value == f64::INFINITY {
            Real::PosInf
        } else if value == f64::NEG_INFINITY {
            Real::NegInf
        } else {
            Big::try_from(value).map_or(Real::Nan, Real::finite)
        }
    }

    /// A value at [`PRECISION`] bits (dashu returns some exact results, such as e⁰ = 1, with
    /// unlimited precision, which its transcendental functions refuse); dashu's own infinities,
    /// from an exponent beyond its range (e^(10¹⁹)), become ±∞.
    fn finite(big: Big) -> Real {
        if big.repr().is_infinite() {
            Real::infinity(big.repr().exponent() < 0)
        } else if big.precision() == PRECISION {
            Real::Finite(big)
        } else {
            Real::Finite(big.with_precision(PRECISION).value())
        }
    }

    /// 0.
    pub fn zero() -> Real {
        Real::from_f64(0.0)
    }

    /// 1.
    pub fn one() -> Real {
        Real::from_f64(1.0)
    }

    /// Rounded once to the nearest f64 (overflow to ±∞, underflow through the subnormals).
    pub fn to_f64(&self) -> f64 {
        match self {
            Real::Finite(big) => big.to_f64().value(),
            Real::PosInf => f64::INFINITY,
            Real::NegInf => f64::NEG_INFINITY,
            Real::Nan => f64::NAN,
        }
    }

    /// Whether this is NaN.
    pub fn is_nan(&self) -> bool {
        matches!(self, Real::Nan)
    }

    /// Whether this is exactly zero.
    pub fn is_zero(&self) -> bool {
        matches!(self, Real::Finite(big) if is_zero(big))
    }

    /// −1, 0 or 1 (0 for NaN).
    fn signum(&self) -> i8 {
        match self {
            Real::Finite(big) if is_zero(big) => 0,
            Real::Finite(big) if *big < Big::ZERO => -1,
            Real::Finite(_) | Real::PosInf => 1,
            Real::NegInf => -1,
            Real::Nan => 0,
        }
    }

    /// Whether this is > 0.
    pub fn is_positive(&self) -> bool {
        self.signum() > 0
    }

    /// Whether this is < 0.
    pub fn is_negative(&self) -> bool {
        self.signum() < 0
    }

    /// ∞ with the given sign.
    fn infinity(negative: bool) -> Real {
        if negative {
            Real::NegInf
        } else {
            Real::PosInf
        }
    }

    /// |self|.
    pub fn abs(&self) -> Real {
        if self.is_negative() {
            -self
        } else {
            self.clone()
        }
    }

    /// The larger of the two; NaN if either is.
    pub fn max(&self, other: &Real) -> Real {
        match (self, other) {
            (Real::Nan, _) | (_, Real::Nan) => Real::Nan,
            _ if (self - other).is_negative() => other.clone(),
            _ => self.clone(),
        }
    }

    /// The smaller of the two; NaN if either is.
    pub fn min(&self, other: &Real) -> Real {
        -(-self).max(&-other)
    }

    /// ⌊log₂|x|⌋ of a finite nonzero value.
    pub fn exponent(&self) -> Option<isize> {
        match self {
            Real::Finite(big) if !is_zero(big) => {
                let digits = isize::try_from(big.repr().digits()).ok()?;
                Some(big.repr().exponent() + digits - 1)
            }
            _ => None,
        }
    }

    /// Whether this is finite and below 2^−(PRECISION + 16) in magnitude, where eˣ rounds to 1
    /// and eˣ − 1 to x (dashu's exp runs out of memory on arguments of exponent −10¹⁸).
    fn is_negligible(&self) -> bool {
        self.exponent()
            .is_some_and(|e| e < -(PRECISION as isize) - 16)
    }

    /// eˣ (e^−∞ = 0).
    pub fn exp(&self) -> Real {
        match self {
            _ if self.is_negligible() => Real::one(),
            Real::Finite(big) => Real::finite(big.exp()),
            Real::PosInf => Real::PosInf,
            Real::NegInf => Real::zero(),
            Real::Nan => Real::Nan,
        }
    }

    /// eˣ − 1, accurate for small x (e^−∞ − 1 = −1).
    pub fn exp_m1(&self) -> Real {
        match self {
            _ if self.is_negligible() => self.clone(),
            Real::Finite(big) => Real::finite(big.exp_m1()),
            Real::PosInf => Real::PosInf,
            Real::NegInf => -Real::one(),
            Real::Nan => Real::Nan,
        }
    }

    /// Rounded once to the nearest float32 (overflow to ±∞), as an extended real: a cast to
    /// float32 that an anchor's semantics performs.
    pub fn round_to_f32(&self) -> Real {
        match self {
            Real::Finite(big) => Real::from_f64(f64::from(big.to_f32().value())),
            other => other.clone(),
        }
    }

    /// ln x: −∞ at 0, NaN below.
    pub fn ln(&self) -> Real {
        match self {
            Real::Nan | Real::NegInf => Real::Nan,
            Real::PosInf => Real::PosInf,
            _ if self.is_zero() => Real::NegInf,
            _ if self.is_negative() => Real::Nan,
            Real::Finite(big) => Real::finite(big.ln()),
        }
    }

    /// ln(1 + x), accurate for small x: −∞ at −1, NaN below.
    pub fn ln_1p(&self) -> Real {
        let shifted = self + &Real::one();
        match self {
            Real::Finite(big) if shifted.is_positive() => Real::finite(big.ln_1p()),
            _ => shifted.ln(),
        }
    }

    /// xʸ for a real exponent y, with C's `pow` conventions: x⁰ = 1, 0ʸ = 0 for y > 0 and +∞ for
    /// y < 0, a negative base only with an integral exponent (NaN otherwise).
    pub fn powf(&self, y: f64) -> Real {
        if y == 0.0 {
            return Real::one();
        }
        match self {
            Real::Nan => Real::Nan,
            _ if y.is_nan() => Real::Nan,
            _ if self.is_zero() => {
                if y > 0.0 {
                    Real::zero()
                } else {
                    Real::PosInf
                }
            }
            _ if self.is_negative() => {
                if y.fract() != 0.0 {
                    return Real::Nan;
                }
                let magnitude = self.abs().powf(y);
                if (y / 2.0).fract() == 0.0 {
                    magnitude
                } else {
                    -magnitude
                }
            }
            _ => (&Real::from_f64(y) * &self.ln()).exp(),
        }
    }
}

impl Neg for &Real {
    type Output = Real;

    fn neg(self) -> Real {
        match self {
            Real::Finite(big) => Real::finite(-big.clone()),
            Real::PosInf => Real::NegInf,
            Real::NegInf => Real::PosInf,
            Real::Nan => Real::Nan,
        }
    }
}

impl Add for &Real {
    type Output = Real;

    fn add(self, other: &Real) -> Real {
        match (self, other) {
            (Real::Finite(a), Real::Finite(b)) => Real::finite(a + b),
            (Real::Nan, _) | (_, Real::Nan) => Real::Nan,
            (Real::PosInf, Real::NegInf) | (Real::NegInf, Real::PosInf) => Real::Nan,
            (Real::PosInf | Real::NegInf, _) => self.clone(),
            (_, infinite) => infinite.clone(),
        }
    }
}

impl Sub for &Real {
    type Output = Real;

    fn sub(self, other: &Real) -> Real {
        self + &-other
    }
}

impl Mul for &Real {
    type Output = Real;

    fn mul(self, other: &Real) -> Real {
        match (self, other) {
            (Real::Finite(a), Real::Finite(b)) => Real::finite(a * b),
            (Real::Nan, _) | (_, Real::Nan) => Real::Nan,
            _ => match self.signum() * other.signum() {
                0 => Real::Nan,
                sign => Real::infinity(sign < 0),
            },
        }
    }
}

impl Div for &Real {
    type Output = Real;

    fn div(self, other: &Real) -> Real {
        match (self, other) {
            (Real::Nan, _) | (_, Real::Nan) => Real::Nan,
            (Real::Finite(_), Real::PosInf | Real::NegInf) => Real::zero(),
            (Real::PosInf | Real::NegInf, Real::PosInf | Real::NegInf) => Real::Nan,
            _ if other.is_zero() => match self.signum() {
                0 => Real::Nan,
                sign => Real::infinity(sign < 0),
            },
            (Real::Finite(a), Real::Finite(b)) => Real::finite(a / b),
            _ => Real::infinity(self.signum() * other.signum() < 0),
        }
    }
}

/// The owned forms of the operators, forwarding to the borrowed ones.
macro_rules! owned_operators {
    ($($trait:ident $method:ident),*) => {$(
        impl $trait for Real {
            type Output = Real;

            fn $method(self, other: Real) -> Real {
                (&self).$method(&other)
            }
        }

        impl $trait<&Real> for Real {
            type Output = Real;

            fn $method(self, other: &Real) -> Real {
                (&self).$method(other)
            }
        }
    )*};
}

owned_operators!(Add add, Sub sub, Mul mul, Div div);

impl Neg for Real {
    type Output = Real;

    fn neg(self) -> Real {
        -&self
    }
}

/// Σ values, left to right (exact up to the working precision's rounding of each partial sum).
pub fn sum<'a>(values: impl IntoIterator<Item = &'a Real>) -> Real {
    values
        .into_iter()
        .fold(Real::zero(), |total, value| total + value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ieee_rules_for_the_non_finite() {
        let (zero, one) = (Real::zero(), Real::one());
        assert!((&zero / &zero).is_nan());
        assert_eq!(&one / &zero, Real::PosInf);
        assert_eq!(&-&one / &zero, Real::NegInf);
        assert!((&Real::PosInf * &zero).is_nan());
        assert!((&Real::PosInf + &Real::NegInf).is_nan());
        assert_eq!(zero.ln(), Real::NegInf);
        assert!(Real::from_f64(-1.0).ln().is_nan());
        assert_eq!(Real::NegInf.exp(), zero);
        assert_eq!(Real::from_f64(-1.0).ln_1p(), Real::NegInf);
        assert_eq!(zero.powf(0.5), zero);
        assert_eq!(zero.powf(-0.5), Real::PosInf);
        assert_eq!(Real::from_f64(-2.0).powf(3.0).to_f64(), -8.0);
        assert!(Real::from_f64(-2.0).powf(0.5).is_nan());
    }

    #[test]
    fn values_are_exact_and_round_once() {
        // 1 + 1e-300 rounds to 1 at 256 bits; ln1p keeps the small argument all the same.
        assert_eq!(Real::from_f64(1e-300).ln_1p().to_f64(), 1e-300);
        assert_eq!(Real::from_f64(5e-324).to_f64(), 5e-324);
        assert_eq!(Real::from_f64(1.0).exp().ln().to_f64(), 1.0);
        assert_eq!(Real::from_f64(0.75).exponent(), Some(-1));
        assert_eq!(Real::from_f64(1.0).exponent(), Some(0));
        assert_eq!(Real::from_f64(-3e9).max(&Real::from_f64(2.0)).to_f64(), 2.0);
        // e^−10⁴ is far below f64's range yet exact here, and rounds to 0 only at the end.
        let far = Real::from_f64(-1e4).exp();
        assert!(far.is_positive());
        assert_eq!(far.to_f64(), 0.0);
        // Beyond dashu's exponent range: ∞, and 0 on the other side.
        assert_eq!(Real::from_f64(1e300).exp(), Real::PosInf);
        assert_eq!(Real::from_f64(-1e300).exp().to_f64(), 0.0);
        assert_eq!(Real::from_f64(1e300).exp().ln(), Real::PosInf);
        // Far below the precision, e^x is 1 and e^x − 1 is x.
        let negligible = Real::from_f64(-1e18).exp();
        assert_eq!(negligible.exp(), Real::one());
        assert_eq!(negligible.exp_m1(), negligible);
        // e^x − 1 keeps a tiny x; the float32 cast rounds once.
        assert_eq!(Real::from_f64(-1e-300).exp_m1().to_f64(), -1e-300);
        assert_eq!(
            Real::from_f64(0.1).round_to_f32().to_f64(),
            f64::from(0.1_f32)
        );
        let just_above =
            Real::from_f64(1.0) + Real::from_f64(2_f64.powi(-24)) + Real::from_f64(1e-60);
        assert_eq!(just_above.round_to_f32().to_f64(), 1.0 + 2_f64.powi(-23));
    }
}
