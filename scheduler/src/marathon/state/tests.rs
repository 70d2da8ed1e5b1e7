use super::*;
use crate::marathon::app::parse_app;

fn app(id: &str) -> AppDefinition {
    parse_app(format!(r#"{{"id": "{id}", "cmd": "sleep 100"}}"#).as_bytes()).unwrap()
}

fn id(text: &str) -> PathId {
    PathId::parse(text).unwrap()
}

#[tokio::test]
async fn an_app_is_created_once_and_read_back() {
    let apps = Apps::new(MemoryStore::default());
    let created = apps.create(app("/prod/web"), Timestamp(1)).await.unwrap();
    assert_eq!(created.version, Some(Timestamp(1)));
    let e = apps
        .create(app("/prod/web"), Timestamp(2))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert_eq!(e.message, "An app with id [/prod/web] already exists.");
    let stored = apps.get(&id("/prod/web")).await.unwrap().unwrap();
    assert_eq!(stored.app, created);
    assert!(apps.get(&id("/prod/other")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_change_applies_only_to_the_version_it_read() {
    let apps = Apps::new(MemoryStore::default());
    apps.create(app("/web"), Timestamp(1)).await.unwrap();
    let read = apps.get(&id("/web")).await.unwrap().unwrap();
    let mut scaled = read.app.clone();
    scaled.instances = 5;
    apps.replace(&read, scaled, Timestamp(2)).await.unwrap();
    // A second writer that read the same state loses.
    let mut other = read.app.clone();
    other.instances = 7;
    let lost = apps.replace(&read, other, Timestamp(3)).await.unwrap_err();
    assert_eq!(lost.status, 409);
    let now = apps.get(&id("/web")).await.unwrap().unwrap();
    assert_eq!(now.app.instances, 5);
    assert_eq!(
        apps.versions(&id("/web")).await.unwrap(),
        vec![Timestamp(2), Timestamp(1)]
    );
}

#[tokio::test]
async fn listing_and_deleting_keep_apps_apart() {
    let apps = Apps::new(MemoryStore::default());
    for (i, name) in ["/prod", "/prod/web", "/a", "/z"].iter().enumerate() {
        apps.create(app(name), Timestamp(i as u64)).await.unwrap();
    }
    let ids: Vec<String> = apps
        .list()
        .await
        .unwrap()
        .iter()
        .map(|a| a.id.to_string())
        .collect();
    assert_eq!(ids, vec!["/a", "/prod", "/prod/web", "/z"]);
    assert!(apps.delete(&id("/prod")).await.unwrap());
    assert!(!apps.delete(&id("/prod")).await.unwrap());
    // Deleting /prod leaves /prod/web and its versions alone.
    assert_eq!(
        apps.versions(&id("/prod/web")).await.unwrap(),
        vec![Timestamp(1)]
    );
    assert!(apps.versions(&id("/prod")).await.unwrap().is_empty());
    assert_eq!(apps.list().await.unwrap().len(), 3);
}

#[tokio::test]
async fn listing_pages_through_many_apps() {
    let apps = Apps::new(MemoryStore::default());
    let n = LIST_PAGE as usize * 2 + 5;
    for i in 0..n {
        let name = format!("/app-{i:05}");
        apps.create(app(&name), Timestamp(i as u64)).await.unwrap();
    }
    assert_eq!(apps.list().await.unwrap().len(), n);
}
