//! `promrelay filter ...`: tools for filter authors (work in progress).
