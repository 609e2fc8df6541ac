#![no_std]
//! The promrelay filter ABI.
