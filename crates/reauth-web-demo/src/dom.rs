//! The few DOM helpers the page needs.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

pub(crate) fn document() -> Option<web_sys::Document> {
    web_sys::window()?.document()
}

pub(crate) fn by_id(id: &str) -> Option<web_sys::Element> {
    document()?.get_element_by_id(id)
}

pub(crate) fn input_value(id: &str) -> String {
    by_id(id)
        .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
        .map(|i| i.value())
        .unwrap_or_default()
}

pub(crate) fn set_text(id: &str, text: &str) {
    if let Some(e) = by_id(id) {
        e.set_text_content(Some(text));
    }
}

/// Appends a child `tag` with `text` (and `class`) to the element `parent`.
pub(crate) fn append(parent: &str, tag: &str, class: &str, cells: &[&str]) {
    let (Some(doc), Some(parent)) = (document(), by_id(parent)) else {
        return;
    };
    let Ok(row) = doc.create_element(tag) else {
        return;
    };
    if !class.is_empty() {
        row.set_class_name(class);
    }
    if tag == "tr" {
        for text in cells {
            if let Ok(td) = doc.create_element("td") {
                td.set_text_content(Some(text));
                let _ = row.append_child(&td);
            }
        }
    } else {
        row.set_text_content(Some(&cells.join(" ")));
    }
    let _ = parent.append_child(&row);
}

pub(crate) fn clear(id: &str) {
    if let Some(e) = by_id(id) {
        e.set_inner_html("");
    }
}

/// Calls `f` on every click of the element `id`.
pub(crate) fn on_click(id: &str, f: impl Fn() + 'static) {
    if let Some(e) = by_id(id) {
        let cb = Closure::<dyn Fn()>::new(f);
        let _ = e.add_event_listener_with_callback("click", cb.as_ref().unchecked_ref());
        cb.forget(); // lives as long as the page
    }
}

/// Milliseconds since the page started (`performance.now()`).
pub(crate) fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or_else(js_sys::Date::now, |p| p.now())
}

/// A query parameter of the page's URL.
pub(crate) fn query(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    url::form_urlencoded::parse(search.trim_start_matches('?').as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
