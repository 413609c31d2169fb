//! l2sm-netns
