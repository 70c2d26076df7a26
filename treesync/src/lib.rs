//! Mirror one directory tree onto another (work in progress).
