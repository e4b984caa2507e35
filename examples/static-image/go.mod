module example.com/static-image

go 1.19
