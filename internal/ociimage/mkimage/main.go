// Command mkimage writes pathtrace's container image as an OCI archive
// (make image): the static binary as /pathtrace, its entrypoint, nothing
// else. Import it with `ctr -n k8s.io images import FILE`, or push it with
// `skopeo copy oci-archive:FILE docker://REGISTRY/pathtrace:TAG`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pathtrace/pathtrace/internal/ociimage"
)

func main() {
	bin := flag.String("binary", "", "the static pathtrace binary (make release)")
	arch := flag.String("arch", "amd64", "its architecture (GOARCH)")
	name := flag.String("name", "ghcr.io/pathtrace/pathtrace:latest", "the image's name")
	out := flag.String("o", "", "the archive to write")
	flag.Parse()
	if *bin == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "mkimage: give -binary and -o")
		os.Exit(2)
	}
	if err := write(*bin, *arch, *name, *out); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func write(bin, arch, name, out string) error {
	b, err := ociimage.Archive(name, arch, ociimage.PathtraceFiles(bin), []string{"/pathtrace"})
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
