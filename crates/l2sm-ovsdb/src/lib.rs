//! l2sm-ovsdb
