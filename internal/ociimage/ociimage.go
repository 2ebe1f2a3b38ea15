// Package ociimage writes OCI image archives without a container engine:
// the lab's images, and pathtrace's own (make image), which containerd
// imports (ctr -n k8s.io images import) and registries accept
// (skopeo copy oci-archive:...).
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// File is one entry of an image layer: a file copied from the host (From),
// a file with Content, a directory (Name ends in /) or a symlink (Link).
type File struct {
	Name, From, Link string
	Content          []byte
	Mode             int64
}

// Archive is an OCI image layout tarball of one image of one layer for
// linux/arch, named name (the io.containerd.image.name annotation
// `ctr images import` reads, and the ref name of OCI tools). Its content
// is fixed by its input: every time stamp is the epoch.
func Archive(name, arch string, files []File, entrypoint []string) ([]byte, error) {
	var layer bytes.Buffer
	lt := tar.NewWriter(&layer)
	epoch := time.Unix(0, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, ModTime: epoch, Format: tar.FormatPAX}
		var body []byte
		switch {
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		case strings.HasSuffix(f.Name, "/"):
			h.Typeflag = tar.TypeDir
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		default:
			h.Typeflag, body = tar.TypeReg, f.Content
			if f.From != "" {
				b, err := os.ReadFile(f.From)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", f.From, err)
				}
				body = b
			}
			h.Size = int64(len(body))
		}
		if err := lt.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
		if _, err := lt.Write(body); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
	}
	if err := lt.Close(); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}

	type descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Platform    map[string]string `json:"platform,omitempty"`
	}
	blobs := map[string][]byte{}
	blob := func(mediaType string, b []byte) descriptor {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[hex.EncodeToString(sum[:])] = b
		return descriptor{MediaType: mediaType, Digest: d, Size: len(b)}
	}
	mustJSON := func(v any) []byte { b, _ := json.Marshal(v); return b }
	layerDesc := blob("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	config := blob("application/vnd.oci.image.config.v1+json", mustJSON(map[string]any{
		"architecture": arch, "os": "linux",
		"config": map[string]any{"Entrypoint": entrypoint, "Env": []string{"PATH=/bin"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	}))
	manifest := blob("application/vnd.oci.image.manifest.v1+json", mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": config, "layers": []descriptor{layerDesc},
	}))
	_, tag, _ := strings.Cut(name[strings.LastIndex(name, "/")+1:], ":")
	manifest.Annotations = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}
	manifest.Platform = map[string]string{"architecture": arch, "os": "linux"}
	index := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []descriptor{manifest}})

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, fmt.Errorf("write archive: %w", err)
	}
	if err := add("index.json", index); err != nil {
		return nil, fmt.Errorf("write archive: %w", err)
	}
	for _, sum := range slices.Sorted(maps.Keys(blobs)) {
		if err := add("blobs/sha256/"+sum, blobs[sum]); err != nil {
			return nil, fmt.Errorf("write archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write archive: %w", err)
	}
	return out.Bytes(), nil
}

// PathtraceFiles are the files of pathtrace's image: the static binary bin
// as /pathtrace, and the directories it writes to or mounts on.
func PathtraceFiles(bin string) []File {
	return []File{
		{Name: "pathtrace", From: bin, Mode: 0o755},
		{Name: "tmp/", Mode: 0o1777},
		{Name: "run/"}, {Name: "run/netns/"},
		{Name: "var/"}, {Name: "var/lib/"}, {Name: "var/lib/pathtrace/"},
	}
}
