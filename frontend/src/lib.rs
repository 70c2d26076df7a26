//! squash-frontend library (work in progress).
