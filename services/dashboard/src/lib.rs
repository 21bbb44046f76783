//! minyi-dashboard
