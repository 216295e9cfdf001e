//! Decimal digits of integers into a stack buffer, without `core::fmt` (it is on the hot path: integer saga ids,
//! and the attempt in every idempotency key).

/// Room for the longest integer written: `-` and the 39 digits of `u128::MAX`.
pub(crate) const MAX_LEN: usize = 40;

/// The decimal form of an integer, kept on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Decimal {
    buf: [u8; MAX_LEN],
    start: usize,
}

impl Decimal {
    /// `-` when `negative`, then the digits of `magnitude` (64-bit division unless it needs 128 bits).
    #[inline]
    pub(crate) fn new(negative: bool, magnitude: u128) -> Decimal {
        let mut buf = [0u8; MAX_LEN];
        let mut pos = buf.len();
        let mut push = |digit: u8| {
            pos -= 1;
            buf[pos] = b'0' + digit;
        };
        match u64::try_from(magnitude) {
            Ok(mut small) => loop {
                push((small % 10) as u8);
                small /= 10;
                if small == 0 {
                    break;
                }
            },
            Err(_) => {
                let mut big = magnitude;
                loop {
                    push((big % 10) as u8);
                    big /= 10;
                    if big == 0 {
                        break;
                    }
                }
            }
        }
        if negative {
            pos -= 1;
            buf[pos] = b'-';
        }
        Decimal { buf, start: pos }
    }

    /// Of an `i32` (attempt numbers).
    #[inline]
    pub(crate) fn of_i32(value: i32) -> Decimal {
        Decimal::new(value < 0, u128::from(value.unsigned_abs()))
    }

    /// The digits as text.
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and '-' are ever written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_display() {
        for v in [0, 1, 9, 10, 42, 1000, -1, -37, i32::MAX, i32::MIN] {
            assert_eq!(Decimal::of_i32(v).as_str(), v.to_string());
        }
        assert_eq!(
            Decimal::new(true, u128::MAX).as_str(),
            format!("-{}", u128::MAX)
        );
        assert_eq!(
            Decimal::new(false, u128::from(u64::MAX)).as_str(),
            u64::MAX.to_string()
        );
    }
}
