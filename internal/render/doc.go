// Package render turns stitched packet paths into output for people and
// programs: an aligned text timeline (optionally colored) and JSON lines
// (one object per packet, schema in docs/json.md, fields added, never renamed).
package render
