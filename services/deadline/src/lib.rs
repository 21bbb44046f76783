//! minyi-deadline
