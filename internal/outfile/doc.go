// Package outfile creates the files pathtrace writes (recordings, the ready
// file) so that only the named file changes: a symbolic link or a hard link
// at the name is replaced, never written through.
package outfile
