//! A judged packet's addresses, copied out of the frame in whole words.
//!
//! The headers have alignment 1 (see [`crate::headers`]), so the compiler
//! copies an address a byte at a time: for IPv6, 32 loads and as many
//! stores or shifts, with spills, about 7 ns of a 25 ns SYN. Where the
//! kernel reads misaligned frame words (`MXGATE_WIDE_LOADS`, which user
//! space sets on x86-64 and arm64), an address is one 4-byte load, or two
//! 8-byte loads, written as BPF assembly because the compiler will not
//! emit a misaligned load. Elsewhere the kernel refuses such a load, and
//! the program is loaded with the byte copies instead: the verifier drops
//! the branch a `.rodata` constant rules out.

use core::arch::asm;

use crate::MXGATE_WIDE_LOADS;

/// An IPv4 address, its bytes in network order in memory.
#[derive(Clone, Copy)]
pub(crate) struct V4Addr(u32);

/// An IPv6 address, its bytes in network order in memory.
#[derive(Clone, Copy)]
pub(crate) struct V6Addr([u64; 2]);

impl V4Addr {
    /// Copies the address in `field`, 4 bytes of the frame.
    #[inline(always)]
    pub(crate) fn read(field: &[u8; 4]) -> Self {
        if MXGATE_WIDE_LOADS.load() == 0 {
            return Self(u32::from_ne_bytes(*field));
        }
        let word: u64;
        // SAFETY: `field` is a reference into the frame that the parser's
        // bounds check produced: its 4 bytes are readable, and the load
        // reads exactly them.
        unsafe {
            asm!(
                "{word} = *(u32 *)({field} + 0)",
                field = in(reg) field.as_ptr(),
                word = out(reg) word,
                options(readonly, nostack, preserves_flags),
            );
        }
        // A 4-byte load zero-extends: the upper half is 0.
        Self(word as u32)
    }

    /// The address's bytes.
    #[inline(always)]
    pub(crate) fn bytes(self) -> [u8; 4] {
        self.0.to_ne_bytes()
    }
}

impl V6Addr {
    /// Copies the address in `field`, 16 bytes of the frame.
    #[inline(always)]
    pub(crate) fn read(field: &[u8; 16]) -> Self {
        if MXGATE_WIDE_LOADS.load() == 0 {
            let (high, low) = field.split_at(8);
            let word = |half: &[u8]| {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(half);
                u64::from_ne_bytes(bytes)
            };
            return Self([word(high), word(low)]);
        }
        let (high, low): (u64, u64);
        // SAFETY: as in `V4Addr::read`, for 16 bytes. `out` (not
        // `lateout`) keeps `high` out of the register holding `field`,
        // which the second load still needs.
        unsafe {
            asm!(
                "{high} = *(u64 *)({field} + 0)",
                "{low} = *(u64 *)({field} + 8)",
                field = in(reg) field.as_ptr(),
                high = out(reg) high,
                low = out(reg) low,
                options(readonly, nostack, preserves_flags),
            );
        }
        Self([high, low])
    }

    /// The address's top 64 bits as a number, from one word: the block,
    /// /32 and /48 the fast path looks up are its top bits
    /// (`filter_common::fast_path::v6_top`).
    #[inline(always)]
    pub(crate) fn top(&self) -> u64 {
        u64::from_be(self.0[0])
    }

    /// The address's bytes.
    #[inline(always)]
    pub(crate) fn bytes(&self) -> [u8; 16] {
        let (high, low) = (self.0[0].to_ne_bytes(), self.0[1].to_ne_bytes());
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&high);
        bytes[8..].copy_from_slice(&low);
        bytes
    }
}
