//! Empty library target: filter-user names this crate as a build dependency
//! so cargo rebuilds the program when its sources change. The program itself
//! is the `mxgate` binary target, built for bpfel-unknown-none.
#![no_std]
