// A static binary for a FROM-scratch image: no libc, no shell, nothing but this program.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Printf("static-image: hello from %s/%s as uid %d in %s\n", runtime.GOOS, runtime.GOARCH, os.Getuid(), mustWd())
}

func mustWd() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	return wd
}
