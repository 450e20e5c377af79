//! The live checklist (`rampart verify`).
