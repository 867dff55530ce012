//! `mxgate top`: a live view for an admin under attack — per interface the
//! attach mode and SYNs per second by outcome, per family, the busiest
//! denied blocks, the list's size, age and state, each source's last
//! result; the mode in the header, red when not enforcing.
//!
//! [`view`] computes what is shown from two snapshots and lays it out as
//! lines; [`terminal`] draws them with ratatui (crossterm) and reads `q`.
//! On a dumb terminal, or when standard output is no terminal, the same
//! lines are printed as plain text.

pub mod terminal;
pub mod view;
