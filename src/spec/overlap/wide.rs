//! Double-double numbers for the few operations per score: the ratio, its complement and their
//! slopes are carried at about 2⁻¹⁰⁴ relative, so each is rounded to f64 once.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::spec::binary::{two_product, two_sum};
use crate::spec::CompensatedSum;

/// hi + lo with |lo| ≤ ulp(hi)/2. A non-finite value has lo = 0 and follows IEEE 754 in hi.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Wide {
    hi: f64,
    lo: f64,
}

impl Wide {
    pub(super) const ZERO: Wide = Wide { hi: 0.0, lo: 0.0 };
    pub(super) const ONE: Wide = Wide { hi: 1.0, lo: 0.0 };

    /// hi + lo, renormalised; a non-finite hi stands alone (its error term is NaN).
    fn new(hi: f64, lo: f64) -> Wide {
        if !hi.is_finite() {
            return Wide::from(hi);
        }
        let (hi, lo) = two_sum(hi, lo);
        Wide {
            hi,
            lo: if hi.is_finite() { lo } else { 0.0 },
        }
    }

    /// The value rounded to f64.
    pub(super) fn value(self) -> f64 {
        self.hi
    }

    /// (hi, lo).
    pub(super) fn split(self) -> (f64, f64) {
        (self.hi, self.lo)
    }
}

impl From<f64> for Wide {
    fn from(value: f64) -> Wide {
        Wide { hi: value, lo: 0.0 }
    }
}

impl From<CompensatedSum> for Wide {
    fn from(sum: CompensatedSum) -> Wide {
        let (hi, lo) = sum.parts();
        Wide::new(hi, lo)
    }
}

impl<T: Into<Wide>> Add<T> for Wide {
    type Output = Wide;

    fn add(self, other: T) -> Wide {
        let other = other.into();
        let (hi, lo) = two_sum(self.hi, other.hi);
        Wide::new(hi, lo + (self.lo + other.lo))
    }
}

impl Neg for Wide {
    type Output = Wide;

    fn neg(self) -> Wide {
        Wide {
            hi: -self.hi,
            lo: -self.lo,
        }
    }
}

impl<T: Into<Wide>> Sub<T> for Wide {
    type Output = Wide;

    fn sub(self, other: T) -> Wide {
        self + -other.into()
    }
}

impl<T: Into<Wide>> Mul<T> for Wide {
    type Output = Wide;

    fn mul(self, other: T) -> Wide {
        let other = other.into();
        let (hi, lo) = two_product(self.hi, other.hi);
        Wide::new(hi, lo + (self.hi * other.lo + self.lo * other.hi))
    }
}

impl<T: Into<Wide>> Div<T> for Wide {
    type Output = Wide;

    /// q = hi/other.hi, then the remainder's quotient: (self − other·q)/other.hi.
    fn div(self, other: T) -> Wide {
        let other = other.into();
        let quotient = self.hi / other.hi;
        if !(quotient.is_finite() && other.hi.is_finite()) {
            return Wide::from(quotient);
        }
        let remainder = self - other * quotient;
        Wide::new(quotient, remainder.hi / other.hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_f64_rounds_away() {
        let third = Wide::ONE / 3.0;
        assert!((third * 3.0 - 1.0).value().abs() < 1e-31);
        assert_eq!((Wide::ONE + 1e-20 - 1.0).value(), 1e-20);
        let product = (Wide::ONE + 2f64.powi(-60)) * (Wide::ONE + 2f64.powi(-60)) - 1.0;
        assert_eq!(product.value(), 2f64.powi(-59));
    }

    #[test]
    fn non_finite_values_follow_ieee() {
        assert!((Wide::ZERO / 0.0).value().is_nan());
        assert_eq!((Wide::ONE / 0.0).value(), f64::INFINITY);
        assert_eq!((Wide::from(f64::INFINITY) + 1.0).value(), f64::INFINITY);
        assert!((Wide::from(f64::INFINITY) - f64::INFINITY).value().is_nan());
        assert_eq!((Wide::from(f64::INFINITY) * 2.0).value(), f64::INFINITY);
        assert_eq!((Wide::ONE / f64::INFINITY).value(), 0.0);
    }

    #[test]
    fn a_compensated_sum_keeps_its_correction() {
        let mut sum = CompensatedSum::default();
        for value in [1.0, 1e-30, -1.0] {
            sum.add(value);
        }
        assert_eq!(Wide::from(sum).value(), 1e-30);
    }
}
