"""An index version on a store: its manifest, file layout (whole or partitioned), publish and CURRENT, and the
change objects stored beside it."""
