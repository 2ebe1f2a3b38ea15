package k8slab

import "github.com/pathtrace/pathtrace/internal/ociimage"

// busyboxImage is the pods' image: Debian's static busybox with the applets
// the lab uses, and a page for httpd in /www.
func busyboxImage(busybox string) ([]ociimage.File, []string) {
	files := []ociimage.File{{Name: "bin/"}, {Name: "tmp/", Mode: 0o1777}, {Name: "www/"},
		{Name: "bin/busybox", From: busybox, Mode: 0o755},
		{Name: "www/index.html", Content: []byte("pathtrace lab\n"), Mode: 0o644}}
	for _, a := range []string{"sh", "httpd", "wget", "nc", "sleep", "cat", "ip", "ls", "echo", "ping"} {
		files = append(files, ociimage.File{Name: "bin/" + a, Link: "busybox"})
	}
	return files, []string{"/bin/sh"}
}
