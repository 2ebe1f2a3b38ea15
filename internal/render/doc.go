// Package render turns stitched packet paths into output for people and
// programs: an aligned text timeline (optionally colored), JSON lines (one
// object per packet, schema in docs/json.md, fields added, never renamed), a
// self-contained HTML report of the whole trace and an SVG of one packet.
package render
