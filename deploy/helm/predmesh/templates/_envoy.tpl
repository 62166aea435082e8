{{/*
Envoy bootstrap: everything but the health listener comes over ADS from the control plane.
The admin API listens on a unix socket only; a static listener on envoy.healthPort exposes
just /ready (probes) and /stats/prometheus (scrapes) from it.
*/}}
{{- define "predmesh.envoyBootstrap" -}}
{{- $ev := .root.Values.envoy -}}
node:
  cluster: {{ include "predmesh.envoyNodeCluster" .root }}
admin:
  address:
    pipe:
      path: /var/run/envoy/admin.sock
      mode: 384
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
      - envoy_grpc:
          cluster_name: xds
  cds_config:
    ads: {}
    resource_api_version: V3
  lds_config:
    ads: {}
    resource_api_version: V3
static_resources:
  clusters:
    - name: xds
      type: STRICT_DNS
      connect_timeout: 1s
      dns_lookup_family: V4_PREFERRED
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options:
              connection_keepalive:
                interval: 30s
                timeout: 5s
      load_assignment:
        cluster_name: xds
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address:
                      address: {{ include "predmesh.componentName" .cp }}.{{ .root.Release.Namespace }}.svc
                      port_value: {{ .cp.values.port }}
    - name: admin
      type: STATIC
      connect_timeout: 0.25s
      load_assignment:
        cluster_name: admin
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    pipe:
                      path: /var/run/envoy/admin.sock
  listeners:
    - name: health
      address:
        socket_address:
          address: 0.0.0.0
          port_value: {{ $ev.healthPort }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: health
                codec_type: AUTO
                route_config:
                  name: health
                  virtual_hosts:
                    - name: health
                      domains: ["*"]
                      routes:
                        - match:
                            path: /ready
                          route:
                            cluster: admin
                        - match:
                            path: /stats/prometheus
                          route:
                            cluster: admin
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end -}}

{{/* node.cluster of the edge Envoys; the control plane serves its snapshot to this cluster. */}}
{{- define "predmesh.envoyNodeCluster" -}}
{{- include "predmesh.componentName" (dict "root" . "component" "envoy") -}}
{{- end -}}
