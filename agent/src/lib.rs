//! Drover's agent: registers with the leading master, advertises its resources, runs tasks
//! through `drover executor` processes and reports their status (DESIGN.md, steps 7 to 10).
//!
//! Not built yet: the offer cycle issue delivers it. The crate exists so that the workspace
//! has the layout DESIGN.md fixes.
