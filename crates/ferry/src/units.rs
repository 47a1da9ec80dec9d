//! Rates with units on the command line (`500K`, `1M`): the parser is shared with ferryd's
//! configuration file, so both accept exactly the same spellings.

pub use ferry_core::units::parse_rate;
