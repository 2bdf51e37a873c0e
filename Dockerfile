# Multi-stage build of the semcache proxy. Not built in CI: the development
# machines run no Docker engine. `make build` is the tested build.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -o /out/semcache ./cmd/semcache

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/semcache /semcache
EXPOSE 8080
ENTRYPOINT ["/semcache", "serve", "--listen", "0.0.0.0:8080"]
