//! The deployment kit's manifests stay valid and in step with the code: the Kubernetes
//! manifests and the Zabbix template parse and have the structure the README promises.
//! Needs no root. The systemd unit, fail2ban and the generated docs: deploy_host.rs.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::collections::{BTreeMap, BTreeSet};

use mirror_xdp::policy::Policy;
use mirror_xdp_common::Reason;
use mirror_xdp_tests::repo::{read, root as repo};
use serde_yaml::Value;

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, is {v:?}"))
}

fn seq<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what} should be a list, is {v:?}"))
}

/// The entry of a list of mappings whose `key` is `value`.
fn find<'a>(list: &'a Value, key: &str, value: &str, what: &str) -> &'a Value {
    seq(list, what)
        .iter()
        .find(|e| e[key].as_str() == Some(value))
        .unwrap_or_else(|| panic!("{what}: no entry with {key} = {value}"))
}

fn daemonset_pod() -> Value {
    let ds = yaml("deploy/kubernetes/daemonset.yaml");
    assert_eq!(ds["kind"].as_str(), Some("DaemonSet"));
    assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
    ds["spec"]["template"].clone()
}

#[test]
fn daemonset_runs_on_the_host_network_with_the_pins_and_state_of_the_host() {
    let template = daemonset_pod();
    let pod = &template["spec"];
    assert_eq!(
        pod["hostNetwork"].as_bool(),
        Some(true),
        "XDP needs the node's interfaces"
    );
    assert!(
        !seq(&pod["tolerations"], "tolerations").is_empty(),
        "tolerations let it run on tainted mirror nodes"
    );
    assert_eq!(
        template["metadata"]["annotations"]["prometheus.io/scrape"].as_str(),
        Some("true")
    );

    let containers = seq(&pod["containers"], "containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let env: BTreeMap<&str, &str> = seq(&c["env"], "env")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();

    // The volumes: the host's bpffs and state folder, and the policy ConfigMap.
    let volumes = &pod["volumes"];
    let mounts = &c["volumeMounts"];
    let bpffs = find(volumes, "name", "bpffs", "volumes");
    assert_eq!(bpffs["hostPath"]["path"].as_str(), Some("/sys/fs/bpf"));
    let bpffs_mount = find(mounts, "name", "bpffs", "volumeMounts");
    let bpffs_at = str_of(&bpffs_mount["mountPath"], "bpffs mountPath");
    assert!(
        env.get("MIRROR_XDP_BPFFS")
            .is_some_and(|dir| dir.starts_with(&format!("{bpffs_at}/"))),
        "MIRROR_XDP_BPFFS {:?} must lie in the bpffs mount {bpffs_at}",
        env.get("MIRROR_XDP_BPFFS")
    );
    // Bidirectional needs a privileged container; pins need no propagation at all.
    assert_eq!(
        bpffs_mount["mountPropagation"].as_str(),
        Some("HostToContainer")
    );
    let state = find(volumes, "name", "state", "volumes");
    assert_eq!(
        state["hostPath"]["path"].as_str(),
        Some("/var/lib/mirror-xdp")
    );
    let state_at = str_of(
        &find(mounts, "name", "state", "volumeMounts")["mountPath"],
        "state mountPath",
    );
    assert_eq!(env.get("MIRROR_XDP_STATE_DIR"), Some(&state_at));
    let policy = find(volumes, "name", "policy", "volumes");
    assert_eq!(
        policy["configMap"]["name"].as_str(),
        Some("mirror-xdp-policy")
    );
    let policy_mount = find(mounts, "name", "policy", "volumeMounts");
    assert_eq!(policy_mount["mountPath"].as_str(), Some("/etc/mirror-xdp"));
    assert!(
        policy_mount["subPath"].is_null(),
        "a subPath mount never sees ConfigMap updates, so the daemon would never reload"
    );

    // Unprivileged, with exactly the capabilities the unit has too.
    let sc = &c["securityContext"];
    assert_ne!(
        sc["privileged"].as_bool(),
        Some(true),
        "decided: not privileged"
    );
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    let caps = |list: &str| -> BTreeSet<&str> {
        seq(&sc["capabilities"][list], list)
            .iter()
            .map(|v| str_of(v, "capability"))
            .collect()
    };
    assert_eq!(caps("add"), BTreeSet::from(["BPF", "NET_ADMIN", "PERFMON"]));
    assert_eq!(caps("drop"), BTreeSet::from(["ALL"]));

    // The daemon and its flags.
    let args: Vec<&str> = seq(&c["args"], "args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    assert_eq!(
        args[..6],
        [
            "run",
            "--iface",
            "$(MIRROR_XDP_IFACE)",
            "--policy",
            "/etc/mirror-xdp/policy.toml",
            "--metrics"
        ]
    );
    assert!(args[6].ends_with(":9472"), "metrics address {}", args[6]);
    assert!(env.get("MIRROR_XDP_IFACE").is_some_and(|i| !i.is_empty()));
    let probe = &c["livenessProbe"]["httpGet"];
    assert_eq!(probe["path"].as_str(), Some("/metrics"));
    let port = find(&c["ports"], "name", "metrics", "ports");
    assert_eq!(port["containerPort"].as_u64(), Some(9472));
    assert_eq!(probe["port"].as_str(), Some("metrics"));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !c["resources"][kind][resource].is_null(),
                "resources.{kind}.{resource} missing"
            );
        }
    }
}

#[test]
fn configmap_holds_the_example_policy() {
    let cm = yaml("deploy/kubernetes/configmap.yaml");
    assert_eq!(cm["kind"].as_str(), Some("ConfigMap"));
    assert_eq!(cm["metadata"]["name"].as_str(), Some("mirror-xdp-policy"));
    let text = str_of(&cm["data"]["policy.toml"], "data.policy.toml");
    // Parsed as if it were the example file, so that the paths compare equal too.
    let example = repo().join("examples/mirror.toml");
    let from_configmap = Policy::parse(text, &example)
        .unwrap_or_else(|e| panic!("the ConfigMap's policy.toml is invalid: {e}"));
    let from_example = Policy::load(&example).expect("examples/mirror.toml is valid");
    // The same policy, whatever the comments say: the texts it was read from aside.
    let meaning = |p: Policy| Policy {
        files: Default::default(),
        ..p
    };
    assert_eq!(
        meaning(from_configmap),
        meaning(from_example),
        "deploy/kubernetes/configmap.yaml and examples/mirror.toml hold different policies"
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    assert_eq!(k["kind"].as_str(), Some("Kustomization"));
    assert_eq!(k["namespace"].as_str(), Some("mirror-xdp"));
    let listed: BTreeSet<String> = seq(&k["resources"], "resources")
        .iter()
        .map(|r| str_of(r, "resource").to_string())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
    for name in &present {
        let doc = yaml(&format!("deploy/kubernetes/{name}"));
        assert!(
            doc["kind"].is_string() && doc["apiVersion"].is_string(),
            "{name}"
        );
    }
}

#[test]
fn the_manifests_name_the_image_cargo_xtask_package_builds() {
    let version = env!("CARGO_PKG_VERSION");
    let template = daemonset_pod();
    let container = &seq(&template["spec"]["containers"], "containers")[0];
    assert_eq!(
        str_of(&container["image"], "image"),
        format!("mirror-xdp:{version}")
    );
    assert_eq!(
        container["command"][0].as_str(),
        Some("/usr/local/sbin/mirror-xdp"),
        "where the image holds the binary"
    );
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    let image = &seq(&k["images"], "images")[0];
    assert_eq!(str_of(&image["name"], "name"), "mirror-xdp");
    assert_eq!(str_of(&image["newTag"], "newTag"), version);
}

/// Every `uuid` anywhere in the document.
fn uuids<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some("uuid") {
                    out.push(str_of(v, "uuid"));
                } else {
                    uuids(v, out);
                }
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| uuids(v, out)),
        _ => {}
    }
}

fn is_uuid_v4(u: &str) -> bool {
    let b = u.as_bytes();
    b.len() == 32
        && b.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        && b[12] == b'4'
        && matches!(b[16], b'8' | b'9' | b'a' | b'b')
}

#[test]
fn zabbix_template_reads_every_reason() {
    let doc = yaml("deploy/zabbix/mirror-xdp-template.yaml");
    let export = &doc["zabbix_export"];
    assert!(
        export["version"].is_string(),
        "the version is a string: '6.0'"
    );

    let mut all = Vec::new();
    uuids(&doc, &mut all);
    assert!(all.len() > 20);
    for u in &all {
        assert!(
            is_uuid_v4(u),
            "{u} is not a UUIDv4 in 32 lowercase hex digits"
        );
    }
    assert_eq!(
        all.iter().collect::<BTreeSet<_>>().len(),
        all.len(),
        "uuids repeat"
    );

    let templates = seq(&export["templates"], "templates");
    assert_eq!(templates.len(), 1);
    let t = &templates[0];
    let name = str_of(&t["template"], "template");
    let items = seq(&t["items"], "items");
    let master: Vec<&Value> = items
        .iter()
        .filter(|i| i["type"].as_str() == Some("HTTP_AGENT"))
        .collect();
    assert_eq!(master.len(), 1, "one HTTP agent item reads the endpoint");
    let master_key = str_of(&master[0]["key"], "key");
    let url = str_of(&master[0]["url"], "url");
    assert!(
        url.starts_with("http://{HOST.CONN}:") && url.ends_with("/metrics"),
        "{url}"
    );

    // Every dependent item: its Prometheus pattern and whether it is turned into a rate.
    let mut patterns: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
    for item in items
        .iter()
        .filter(|i| i["type"].as_str() == Some("DEPENDENT"))
    {
        let key = str_of(&item["key"], "key");
        assert_eq!(
            item["master_item"]["key"].as_str(),
            Some(master_key),
            "{key}"
        );
        let steps = seq(&item["preprocessing"], "preprocessing");
        let prom = steps
            .iter()
            .find(|s| s["type"].as_str() == Some("PROMETHEUS_PATTERN"))
            .unwrap_or_else(|| panic!("{key} has no PROMETHEUS_PATTERN step"));
        let params = seq(&prom["parameters"], "parameters");
        assert_eq!(
            params.len(),
            3,
            "{key}: pattern, value|label|function, name"
        );
        let rate = steps
            .iter()
            .any(|s| s["type"].as_str() == Some("CHANGE_PER_SECOND"));
        patterns.insert(str_of(&params[0], "pattern"), (key, rate));
    }
    for reason in Reason::ALL {
        let pattern = format!("mirror_xdp_packets_total{{reason=\"{}\"}}", reason.name());
        assert!(
            patterns.contains_key(pattern.as_str()),
            "no item for reason {}",
            reason.name()
        );
    }
    assert!(patterns.contains_key("mirror_xdp_policy_generation"));
    let (reload_key, reload_rate) = patterns["mirror_xdp_reloads_total{result=\"error\"}"];
    assert!(reload_rate, "{reload_key}: reload errors per second");

    // Triggers: nested under their item; each names keys of this template.
    let keys: BTreeSet<&str> = items.iter().map(|i| str_of(&i["key"], "key")).collect();
    let expressions: Vec<&str> = items
        .iter()
        .flat_map(|i| i["triggers"].as_sequence().into_iter().flatten())
        .map(|tr| str_of(&tr["expression"], "expression"))
        .collect();
    let prefix = format!("/{name}/");
    for e in &expressions {
        let referenced = e
            .split(prefix.as_str())
            .skip(1)
            .map(|rest| rest.split([',', ')']).next().unwrap());
        for key in referenced {
            assert!(keys.contains(key), "trigger {e} names unknown item {key}");
        }
    }
    let syn_key = patterns["mirror_xdp_packets_total{reason=\"syn_flood\"}"].0;
    let has = |pred: &dyn Fn(&str) -> bool, what: &str| {
        assert!(expressions.iter().any(|e| pred(e)), "no trigger for {what}");
    };
    has(
        &|e| e.contains(syn_key) && e.contains("{$MIRROR_XDP.SYNFLOOD.MAX}"),
        "SYN floods",
    );
    has(&|e| e.contains(reload_key), "reload errors");
    has(&|e| e.starts_with("nodata("), "an unreachable endpoint");
    let macros: BTreeSet<&str> = seq(&t["macros"], "macros")
        .iter()
        .map(|m| str_of(&m["macro"], "macro"))
        .collect();
    assert!(macros.contains("{$MIRROR_XDP.SYNFLOOD.MAX}"));
    for e in &expressions {
        for used in e.split("{$").skip(1) {
            let m = format!("{{${}", &used[..=used.find('}').unwrap()]);
            assert!(macros.contains(m.as_str()), "{e} uses undefined {m}");
        }
    }

    let graphs = seq(&export["graphs"], "graphs");
    assert!(!graphs.is_empty());
    for g in graphs {
        for gi in seq(&g["graph_items"], "graph_items") {
            assert_eq!(gi["item"]["host"].as_str(), Some(name));
            let key = str_of(&gi["item"]["key"], "graph item key");
            assert!(keys.contains(key), "graph names unknown item {key}");
        }
    }
}
