package outfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// File is a file being written. A new regular file is written under a
// temporary name in the directory of its name until Publish renames it
// into place; a device or a FIFO at the name is written in place.
type File struct {
	*os.File
	name string
	tmp  string // the temporary name until Publish; "" when written in place
}

// Name returns the name the file has once published.
func (f *File) Name() string { return f.name }

// Create starts the file name with mode perm (narrowed by the umask), the
// way tcpdump -w treats its file, but without following links:
//
//   - no file, a regular file or a symbolic link at name: a new regular
//     file is created in the same directory (O_EXCL, so never through a
//     link) and Publish renames it over name. What was there is replaced;
//     a link's target, or another name of a hard-linked file, is not
//     touched. Until Publish, name keeps what it had.
//   - a character device or a FIFO (-w /dev/null, a FIFO a reader has
//     open): opened for writing in place, never created, truncated or
//     followed; Publish does nothing. A FIFO nobody reads is an error.
//   - a directory or a socket: an error.
//
// Errors name the file and the cause in one sentence.
func Create(name string, perm os.FileMode) (*File, error) {
	fi, err := os.Lstat(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("create %s: %w", name, unwrap(err))
	}
	if err == nil {
		switch m := fi.Mode(); {
		case m.IsDir():
			return nil, fmt.Errorf("create %s: it is a directory", name)
		case m&(fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
			return openInPlace(name)
		case !m.IsRegular() && m&fs.ModeSymlink == 0:
			return nil, fmt.Errorf("create %s: it is a %s, not a file", name, typeName(m))
		}
	}
	dir, base := filepath.Split(name)
	for range 10 {
		tmp := filepath.Join(dir, "."+base+".tmp-"+random())
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", name, unwrap(err))
		}
		return &File{File: f, name: name, tmp: tmp}, nil
	}
	return nil, fmt.Errorf("create %s: no free temporary name in %s", name, dir)
}

// openInPlace opens a character device or a FIFO for writing, without
// following a link put there since Lstat, or waiting for a FIFO's reader.
func openInPlace(name string) (*File, error) {
	fd, err := unix.Open(name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENXIO) {
		return nil, fmt.Errorf("create %s: it is a FIFO that no process reads", name)
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO: // stays non-blocking: Go's poller writes it
	case unix.S_IFCHR:
		if err := unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
	default:
		unix.Close(fd)
		return nil, fmt.Errorf("create %s: it changed while being opened", name)
	}
	return &File{File: os.NewFile(uintptr(fd), name), name: name}, nil
}

// Publish gives the file its name: it renames the temporary file over
// whatever is at the name now. It does nothing the second time, or for a
// file written in place.
func (f *File) Publish() error {
	if f.tmp == "" {
		return nil
	}
	if err := os.Rename(f.tmp, f.name); err != nil {
		return fmt.Errorf("create %s: %w", f.name, unwrap(err))
	}
	f.tmp = ""
	return nil
}

// Close closes the file. A file never published is removed: the name
// keeps what it had.
func (f *File) Close() error {
	err := f.File.Close()
	if f.tmp != "" {
		os.Remove(f.tmp)
		f.tmp = ""
	}
	return err
}

// WriteFile writes data to the file name (see Create) and publishes it.
func WriteFile(name string, data []byte, perm os.FileMode) error {
	f, err := Create(name, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, unwrap(err))
	}
	if err := f.Publish(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// unwrap drops the path of an *fs.PathError or *os.LinkError: the caller
// names the file, and the temporary name would only confuse.
func unwrap(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}

func random() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
