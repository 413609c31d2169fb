//! l2sm-pipeline
