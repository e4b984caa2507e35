module example.com/demo

go 1.22

toolchain go1.22.5

require (
	github.com/google/uuid v1.6.0
	golang.org/x/text v0.14.0 // indirect
	github.com/old/thing v1.0.0
	example.com/local v0.0.0
)

require github.com/stretchr/testify v1.9.0

replace github.com/old/thing => github.com/new/thing v1.2.0

replace example.com/local => ./local

exclude golang.org/x/text v0.13.0
