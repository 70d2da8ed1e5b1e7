use super::*;
use crate::marathon::app::parse_app;
use crate::marathon::instance::Condition;

fn record(id: &str, version: u64) -> AppRecord {
    let mut app = parse_app(format!(r#"{{"id": "{id}", "cmd": "sleep 100"}}"#).as_bytes()).unwrap();
    app.version = Some(Timestamp(version));
    AppRecord {
        app,
        config_version: Timestamp(version),
    }
}

fn id(text: &str) -> PathId {
    PathId::parse(text).unwrap()
}

#[tokio::test]
async fn an_app_is_created_once_and_read_back() {
    let records = Records::new(MemoryStore::default());
    let created = record("/prod/web", 1);
    records.create(&created).await.unwrap();
    let e = records.create(&record("/prod/web", 2)).await.unwrap_err();
    assert_eq!(e.status, 409);
    assert_eq!(e.message, "An app with id [/prod/web] already exists.");
    let stored = records.get(&id("/prod/web")).await.unwrap().unwrap();
    assert_eq!(stored.record, created);
    assert!(records.get(&id("/prod/other")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_change_applies_only_to_the_version_it_read() {
    let records = Records::new(MemoryStore::default());
    records.create(&record("/web", 1)).await.unwrap();
    let read = records.get(&id("/web")).await.unwrap().unwrap();
    let mut scaled = read.record.clone();
    scaled.app.instances = 5;
    scaled.app.version = Some(Timestamp(2));
    records.replace(&read, &scaled).await.unwrap();
    // A second writer that read the same state loses.
    let mut other = read.record.clone();
    other.app.instances = 7;
    other.app.version = Some(Timestamp(3));
    let lost = records.replace(&read, &other).await.unwrap_err();
    assert_eq!(lost.status, 409);
    let now = records.get(&id("/web")).await.unwrap().unwrap();
    assert_eq!(now.record.app.instances, 5);
    assert_eq!(
        records.versions(&id("/web")).await.unwrap(),
        vec![Timestamp(2), Timestamp(1)]
    );
    let first = records
        .version(&id("/web"), Timestamp(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.instances, 1);
    assert!(records
        .version(&id("/web"), Timestamp(9))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn listing_and_deleting_keep_apps_apart() {
    let records = Records::new(MemoryStore::default());
    for (i, name) in ["/prod", "/prod/web", "/a", "/z"].iter().enumerate() {
        records.create(&record(name, i as u64)).await.unwrap();
    }
    let ids: Vec<String> = records
        .list()
        .await
        .unwrap()
        .iter()
        .map(|r| r.app.id.to_string())
        .collect();
    assert_eq!(ids, vec!["/a", "/prod", "/prod/web", "/z"]);
    assert!(records.delete(&id("/prod")).await.unwrap());
    assert!(!records.delete(&id("/prod")).await.unwrap());
    // Deleting /prod leaves /prod/web and its versions alone.
    assert_eq!(
        records.versions(&id("/prod/web")).await.unwrap(),
        vec![Timestamp(1)]
    );
    assert!(records.versions(&id("/prod")).await.unwrap().is_empty());
    assert_eq!(records.list().await.unwrap().len(), 3);
}

#[tokio::test]
async fn listing_pages_through_many_apps() {
    let records = Records::new(MemoryStore::default());
    let n = LIST_PAGE as usize * 2 + 5;
    for i in 0..n {
        let name = format!("/app-{i:05}");
        records.create(&record(&name, i as u64)).await.unwrap();
    }
    assert_eq!(records.list().await.unwrap().len(), n);
}

#[tokio::test]
async fn instances_and_deployments_are_kept_apart_from_apps() {
    let records = Records::new(MemoryStore::default());
    let r = record("/web", 1);
    records.create(&r).await.unwrap();
    let mut i = Instance::scheduled(&r.app.id, Timestamp(1));
    i.incarnation = 1;
    i.condition = Condition::Provisioned;
    records.put_instance(&i).await.unwrap();
    let d = Deployment::plan(&r.app.id, None, Some(r.app.clone()), Timestamp(1), true);
    records.put_deployment(&d).await.unwrap();
    assert_eq!(records.instances().await.unwrap(), vec![i.clone()]);
    assert_eq!(records.deployments().await.unwrap(), vec![d.clone()]);
    assert_eq!(records.list().await.unwrap().len(), 1);
    records.forget_instance(&i.id).await.unwrap();
    records.forget_deployment(&d.id).await.unwrap();
    assert!(records.instances().await.unwrap().is_empty());
    assert!(records.deployments().await.unwrap().is_empty());
}
