//! KubeRay (ray.io/v1) manifests built from the recipe's `[cluster]`.
//!
//! One image reference goes into the head, every worker group and (for a RayJob) the
//! submitter pod template. Quantities, rayStartParams and rayVersion are
//! strings, the Ray container is `containers[0]`, and the head declares the ports KubeRay
//! expects (gcs-server 6379, dashboard 8265, client 10001, metrics 8080, serve 8000 for a
//! RayService).

use serde_json::{Map, Value, json};

use super::runtime_env::RuntimeEnv;
use crate::recipe::{Cluster, ClusterKind, Resources};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "cannot tell the Ray version of image `{image}`; set `ray_version = \"2.60.0\"` in [cluster]"
    )]
    UnknownRayVersion { image: String },
    #[error(
        "[cluster] kind is {kind}; `--emit {wanted}` needs kind = \"{wanted_kind}\" or a [cluster] of that kind"
    )]
    KindMismatch {
        kind: ClusterKind,
        wanted: String,
        wanted_kind: ClusterKind,
    },
    #[error("a {0} needs [cluster] in the recipe; add one (see recipes/README.md)")]
    NoCluster(ClusterKind),
    #[error("a RayJob needs `entrypoint` in [cluster]")]
    NoEntrypoint,
    #[error("a RayService needs [cluster.serve] with an import_path")]
    NoServe,
}

/// The Ray version KubeRay's `rayVersion` says for `image`: the recipe's `[cluster]
/// ray_version`, else the version found in the image (`found`: bake knows it from the base's
/// labels or installed set), else the one its tag names.
pub fn ray_version(
    cluster: Option<&crate::recipe::Cluster>,
    found: Option<&str>,
    image: &str,
) -> Option<String> {
    cluster
        .and_then(|c| c.ray_version.clone())
        .or_else(|| found.map(str::to_string))
        .or_else(|| ray_version_from_image(image))
}

/// Ray version from a `rayproject/ray:2.60.0-py311-cpu`-style tag.
pub fn ray_version_from_image(image: &str) -> Option<String> {
    let r = crate::oci::reference::Reference::parse(image).ok()?;
    let last = r.repository.rsplit('/').next()?;
    if !(last == "ray" || last.starts_with("ray-")) {
        return None;
    }
    let tag = r.tag?;
    let v: String = tag.split('-').next()?.to_string();
    let parts: Vec<&str> = v.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok())).then_some(v)
}

/// Inputs for one manifest.
#[derive(Debug)]
pub struct ManifestInput<'a> {
    pub kind: ClusterKind,
    pub cluster: &'a Cluster,
    pub image: &'a str,
    pub ray_version: &'a str,
    /// For RayJob (runtimeEnvYAML) and RayService (the application's runtime_env).
    pub runtime_env: Option<&'a RuntimeEnv>,
}

fn resources(r: &Resources) -> Option<Value> {
    let mut req = Map::new();
    if let Some(c) = &r.cpu {
        req.insert("cpu".into(), json!(c));
    }
    if let Some(m) = &r.memory {
        req.insert("memory".into(), json!(m));
    }
    if let Some(g) = r.gpu.filter(|g| *g > 0) {
        req.insert("nvidia.com/gpu".into(), json!(g.to_string()));
    }
    if req.is_empty() {
        return None;
    }
    Some(json!({ "requests": req.clone(), "limits": req }))
}

fn container(name: &str, image: &str, r: &Resources, ports: Option<Value>) -> Value {
    let mut c = Map::new();
    c.insert("name".into(), json!(name));
    c.insert("image".into(), json!(image));
    if let Some(p) = ports {
        c.insert("ports".into(), p);
    }
    if let Some(res) = resources(r) {
        c.insert("resources".into(), res);
    }
    Value::Object(c)
}

/// Sets `imagePullSecrets` in a pod spec from `[cluster] image_pull_secrets`, if it names any.
fn insert_pull_secrets(pod: &mut Map<String, Value>, cluster: &Cluster) {
    if !cluster.image_pull_secrets.is_empty() {
        let s: Vec<Value> = cluster
            .image_pull_secrets
            .iter()
            .map(|n| json!({ "name": n }))
            .collect();
        pod.insert("imagePullSecrets".into(), Value::Array(s));
    }
}

fn pod_spec(cluster: &Cluster, container: Value) -> Value {
    let mut spec = Map::new();
    spec.insert("containers".into(), json!([container]));
    if let Some(sa) = &cluster.service_account {
        spec.insert("serviceAccountName".into(), json!(sa));
    }
    insert_pull_secrets(&mut spec, cluster);
    json!({ "spec": spec })
}

/// The shared RayClusterSpec.
pub fn cluster_spec(kind: ClusterKind, cluster: &Cluster, image: &str, ray_version: &str) -> Value {
    let mut ports = vec![
        json!({"containerPort": 6379, "name": "gcs-server"}),
        json!({"containerPort": 8265, "name": "dashboard"}),
        json!({"containerPort": 10001, "name": "client"}),
        json!({"containerPort": 8080, "name": "metrics"}),
    ];
    if kind == ClusterKind::RayService {
        ports.push(json!({"containerPort": 8000, "name": "serve"}));
    }
    let head = json!({
        "rayStartParams": cluster.head.ray_start_params,
        "template": pod_spec(cluster, container("ray-head", image, &cluster.head, Some(Value::Array(ports)))),
    });
    let workers: Vec<Value> = cluster
        .workers
        .iter()
        .map(|w| {
            json!({
                "groupName": w.group,
                "replicas": w.replicas,
                "minReplicas": w.min,
                "maxReplicas": w.max,
                "rayStartParams": w.resources.ray_start_params,
                "template": pod_spec(cluster, container("ray-worker", image, &w.resources, None)),
            })
        })
        .collect();
    let mut spec = Map::new();
    spec.insert("rayVersion".into(), json!(ray_version));
    if cluster.autoscaling {
        spec.insert("enableInTreeAutoscaling".into(), json!(true));
    }
    spec.insert("headGroupSpec".into(), head);
    if !workers.is_empty() {
        spec.insert("workerGroupSpecs".into(), Value::Array(workers));
    }
    Value::Object(spec)
}

fn metadata(cluster: &Cluster) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(cluster.name));
    if let Some(ns) = &cluster.namespace {
        m.insert("namespace".into(), json!(ns));
    }
    m.insert(
        "labels".into(),
        json!({"app.kubernetes.io/name": cluster.name, "app.kubernetes.io/managed-by": "raypack"}),
    );
    Value::Object(m)
}

/// Builds the manifest for `input.kind`.
pub fn manifest(input: &ManifestInput) -> Result<Value, SpecError> {
    let c = input.cluster;
    let rcs = cluster_spec(input.kind, c, input.image, input.ray_version);
    let mut doc = Map::new();
    doc.insert("apiVersion".into(), json!("ray.io/v1"));
    doc.insert("kind".into(), json!(input.kind.to_string()));
    doc.insert("metadata".into(), metadata(c));
    let spec = match input.kind {
        ClusterKind::RayCluster => rcs,
        ClusterKind::RayJob => {
            let mut s = Map::new();
            s.insert(
                "entrypoint".into(),
                json!(c.entrypoint.as_ref().ok_or(SpecError::NoEntrypoint)?),
            );
            if let Some(env) = input.runtime_env
                && *env != RuntimeEnv::default()
            {
                s.insert("runtimeEnvYAML".into(), json!(env.to_yaml()));
            }
            s.insert(
                "shutdownAfterJobFinishes".into(),
                json!(c.shutdown_after_job_finishes),
            );
            if let Some(t) = c.ttl_seconds_after_finished
                && c.shutdown_after_job_finishes
            {
                s.insert("ttlSecondsAfterFinished".into(), json!(t));
            }
            if let Some(t) = c.active_deadline_seconds {
                s.insert("activeDeadlineSeconds".into(), json!(t));
            }
            s.insert("rayClusterSpec".into(), rcs);
            // The submitter runs the same image as the cluster (KubeRay's default does too,
            // but spelling it out pins the digest in every pod of the job).
            let mut submitter = Map::new();
            submitter.insert("restartPolicy".into(), json!("Never"));
            submitter.insert(
                "containers".into(),
                json!([{
                    "name": "ray-job-submitter",
                    "image": input.image,
                    "resources": {"requests": {"cpu": "500m", "memory": "200Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                }]),
            );
            insert_pull_secrets(&mut submitter, c);
            s.insert("submitterPodTemplate".into(), json!({ "spec": submitter }));
            Value::Object(s)
        }
        ClusterKind::RayService => {
            let serve = c.serve.as_ref().ok_or(SpecError::NoServe)?;
            let mut app = Map::new();
            app.insert("name".into(), json!(serve.name));
            app.insert("import_path".into(), json!(serve.import_path));
            app.insert("route_prefix".into(), json!(serve.route_prefix));
            if let Some(env) = input.runtime_env
                && *env != RuntimeEnv::default()
            {
                app.insert("runtime_env".into(), env.to_json());
            }
            let serve_config = json!({ "applications": [Value::Object(app)] });
            json!({
                "serveConfigV2": super::to_yaml(&serve_config),
                "rayClusterConfig": rcs,
            })
        }
    };
    doc.insert("spec".into(), spec);
    Ok(Value::Object(doc))
}

/// The name of the shared volume in emitted pods (`env --nfs`).
pub const NFS_VOLUME: &str = "raypack-nfs";

/// Mounts the shared volume at `mount_path` in every pod of `doc` (head, each worker group, a
/// RayJob's submitter) and runs a RayJob's entrypoint after `entrypoint_prefix` (`cd SNAPSHOT
/// && `).
pub fn with_nfs(
    doc: &mut Value,
    volume: &crate::recipe::NfsVolume,
    mount_path: &str,
    entrypoint_prefix: &str,
) {
    let source = match volume {
        crate::recipe::NfsVolume::Claim(c) => {
            json!({ "name": NFS_VOLUME, "persistentVolumeClaim": { "claimName": c } })
        }
        crate::recipe::NfsVolume::Server { server, export } => {
            json!({ "name": NFS_VOLUME, "nfs": { "server": server, "path": export } })
        }
    };
    let mount = json!({ "name": NFS_VOLUME, "mountPath": mount_path });
    let add = |pod: &mut Value| {
        if !pod.is_object() {
            return;
        }
        let vols = pod
            .as_object_mut()
            .expect("object")
            .entry("volumes")
            .or_insert_with(|| json!([]));
        if let Some(v) = vols.as_array_mut() {
            v.push(source.clone());
        }
        for c in pod["containers"].as_array_mut().into_iter().flatten() {
            let mounts = c
                .as_object_mut()
                .expect("container object")
                .entry("volumeMounts")
                .or_insert_with(|| json!([]));
            if let Some(m) = mounts.as_array_mut() {
                m.push(mount.clone());
            }
        }
    };
    if let Some(e) = doc.pointer_mut("/spec/entrypoint")
        && let Some(text) = e.as_str()
    {
        *e = json!(format!("{entrypoint_prefix}{text}"));
    }
    // RayJob: the submitter and rayClusterSpec; RayService: rayClusterConfig; RayCluster: spec.
    for pod in [
        "/spec/submitterPodTemplate/spec",
        "/spec/rayClusterSpec/headGroupSpec/template/spec",
        "/spec/rayClusterConfig/headGroupSpec/template/spec",
        "/spec/headGroupSpec/template/spec",
    ] {
        if let Some(p) = doc.pointer_mut(pod) {
            add(p);
        }
    }
    for groups in [
        "/spec/rayClusterSpec/workerGroupSpecs",
        "/spec/rayClusterConfig/workerGroupSpecs",
        "/spec/workerGroupSpecs",
    ] {
        if let Some(gs) = doc.pointer_mut(groups).and_then(Value::as_array_mut) {
            for g in gs {
                if let Some(p) = g.pointer_mut("/template/spec") {
                    add(p);
                }
            }
        }
    }
}

/// A DaemonSet that pulls `image` onto every node before Ray pods need it, as Ray's docs
/// recommend for large images: an init container of the image (it runs `true` and exits, so
/// the kubelet has pulled the image), then a pause container that keeps the pod, and the image,
/// in place. Tolerates every taint, so GPU and other dedicated nodes pull too. `cluster` gives
/// the name, namespace and pull secrets when the recipe has one.
pub fn prepull(cluster: Option<&Cluster>, project: &str, image: &str) -> Value {
    let name = format!(
        "{}-prepull",
        cluster.map(|c| c.name.as_str()).unwrap_or(project)
    );
    let labels = json!({"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "raypack"});
    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    if let Some(ns) = cluster.and_then(|c| c.namespace.as_ref()) {
        meta.insert("namespace".into(), json!(ns));
    }
    meta.insert("labels".into(), labels.clone());
    let small = json!({"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}});
    let mut pod = Map::new();
    pod.insert(
        "initContainers".into(),
        json!([{ "name": "prepull", "image": image, "command": ["sh", "-c", "true"], "resources": small }]),
    );
    pod.insert(
        "containers".into(),
        json!([{ "name": "pause", "image": PAUSE_IMAGE, "resources": small }]),
    );
    pod.insert("tolerations".into(), json!([{ "operator": "Exists" }]));
    if let Some(c) = cluster {
        insert_pull_secrets(&mut pod, c);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta,
        "spec": {
            "selector": { "matchLabels": { "app.kubernetes.io/name": name } },
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "100%" } },
            "template": { "metadata": { "labels": labels }, "spec": pod },
        },
    })
}

/// The pause image of the prepull DaemonSet's long-running container (Kubernetes' own).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// Values for the kuberay/ray-cluster Helm chart.
pub fn helm_values(cluster: &Cluster, image: &str) -> Value {
    let (repo, tag) = match image.split_once('@') {
        Some((r, d)) => (r.to_string(), d.to_string()),
        None => match image.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (image.to_string(), "latest".to_string()),
        },
    };
    let res = |r: &Resources| resources(r).unwrap_or(json!({}));
    let mut v = json!({
        "image": { "repository": repo, "tag": tag, "pullPolicy": "IfNotPresent" },
        "head": { "rayStartParams": cluster.head.ray_start_params, "resources": res(&cluster.head) },
    });
    if let Some(first) = cluster.workers.first() {
        v["worker"] = json!({
            "groupName": first.group, "replicas": first.replicas, "minReplicas": first.min,
            "maxReplicas": first.max, "rayStartParams": first.resources.ray_start_params,
            "resources": res(&first.resources),
        });
        let extra: Map<String, Value> = cluster.workers[1..]
            .iter()
            .map(|w| {
                (w.group.clone(), json!({
                    "disabled": false, "replicas": w.replicas, "minReplicas": w.min, "maxReplicas": w.max,
                    "rayStartParams": w.resources.ray_start_params, "resources": res(&w.resources),
                }))
            })
            .collect();
        if !extra.is_empty() {
            v["additionalWorkerGroups"] = Value::Object(extra);
        }
    } else {
        v["worker"] = json!({ "disabled": true });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ray_version_from_rayproject_tags() {
        assert_eq!(
            ray_version_from_image("rayproject/ray:2.60.0-py311-cpu").as_deref(),
            Some("2.60.0")
        );
        assert_eq!(
            ray_version_from_image("127.0.0.1:5000/rayproject/ray:2.60.0-py311-cpu").as_deref(),
            Some("2.60.0")
        );
        assert_eq!(
            ray_version_from_image("rayproject/ray-ml:2.9.3-gpu").as_deref(),
            Some("2.9.3")
        );
        assert_eq!(ray_version_from_image("python:3.11"), None);
        assert_eq!(ray_version_from_image("rayproject/ray:latest"), None);
    }
}
