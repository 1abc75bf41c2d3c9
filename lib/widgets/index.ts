/** Jupyter widgets from TypeScript: the protocol (widget.ts), the core controls and anywidget (controls.ts), the host seam (host.ts). */
export { Widget, link, liveWidgets, serializeState, deserializeState, PROTOCOL_VERSION, WIDGET_VIEW_MIME } from "./widget";
export type { Change, Observer, ModelSpec } from "./widget";
export { Layout, Style, DOMWidget, ValueWidget, FloatSlider, IntSlider, FloatLogSlider, Button, ToggleButton, Checkbox, Dropdown, Text, Label, HTML, Output, HBox, VBox, AnyWidget, anywidget } from "./controls";
export type { DOMState, Options as WidgetOptions, FloatSliderState, IntSliderState, FloatLogSliderState, ButtonState, ToggleButtonState, CheckboxState, DropdownState, TextState, LabelState, OutputState, BoxState } from "./controls";
export { setWidgetHost, widgetHost, localWidgetHost } from "./host";
export type { WidgetHost, WidgetEndpoint, HostedModel, BufferPath } from "./host";
