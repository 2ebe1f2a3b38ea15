// Package record writes and reads pathtrace recordings: pcapng files that
// Wireshark opens, carrying every ring-buffer record and the metadata replay
// needs to reproduce a live run byte for byte. The layout is in docs/recording.md.
package record
