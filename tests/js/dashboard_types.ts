/**
 * The type every dashboard of deploy/grafana must have, built from Grafana's published types
 * (npm @grafana/schema). check_dashboards.mjs assigns each dashboard's JSON to it and runs tsc.
 *
 * Grafana's `Dashboard` alone leaves a panel's `options` and field `custom` settings open
 * (`Record<string, unknown>`), so a misspelt or outdated option would pass. Here each panel is
 * narrowed, by its `type`, to the options and field settings that its panel plugin publishes in
 * the same package; a narrowed dashboard is still a Grafana `Dashboard` (proved at the bottom).
 */

import type {
  DataQuery,
  DataSourceRef,
  Dashboard,
  FieldConfig,
  FieldConfigSource,
  Panel,
  RowPanel,
} from "@grafana/schema";
import type * as BarGauge from "@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen";
import type * as DashboardList from "@grafana/schema/dist/esm/raw/composable/dashboardlist/panelcfg/x/DashboardListPanelCfg_types.gen";
import type * as Heatmap from "@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen";
import type * as Stat from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as Table from "@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen";
import type * as TimeSeries from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

/**
 * A type as it is written in JSON. Grafana's types declare many settings as TypeScript string
 * enums (`ThresholdsMode.Absolute`), which a plain string such as "absolute" does not satisfy;
 * the JSON Grafana reads holds the plain string, so every string enum becomes the union of its
 * values. Everything else (numeric enums, optional and required keys) is kept as published.
 */
export type Json<T> = T extends string
  ? `${T}`
  : T extends readonly (infer Item)[]
    ? Json<Item>[]
    : T extends object
      ? { [Key in keyof T]: Json<T[Key]> }
      : T;

/**
 * A query of the Prometheus data source. @grafana/schema no longer ships the Prometheus query
 * type (it moved to the data source's own package, which needs a browser UI stack), so the
 * fields here follow Grafana's PrometheusDataQuery kind: the common `DataQuery` (refId, hide,
 * datasource) plus what the Prometheus data source reads.
 */
export interface PrometheusQuery extends DataQuery {
  /** The data source that runs the query: the dashboard's `datasource` variable. */
  datasource?: DataSourceRef;
  /** The PromQL expression. */
  expr: string;
  /** Series name in legends and tooltips, with `{{label}}` placeholders. */
  legendFormat?: string;
  /** How the result is shaped: one frame per series, one table, or cumulative buckets. */
  format?: "time_series" | "table" | "heatmap";
  /** Evaluate at the end of the time range only (stat and table panels). */
  instant?: boolean;
  /** Evaluate over the time range (time series panels). */
  range?: boolean;
  /** Lower bound of the query step, e.g. "1m". */
  interval?: string;
  /** Step as a multiple of the panel's interval. */
  intervalFactor?: number;
  /** Which query editor Grafana opens: the code editor for hand-written PromQL. */
  editorMode?: "code" | "builder";
  /** Also ask for exemplars. */
  exemplar?: boolean;
}

/** Field settings whose plugin-specific `custom` part is exactly `Custom` (no other keys). */
export interface FieldConfigSourceOf<Custom> extends Omit<FieldConfigSource, "defaults"> {
  defaults: Omit<FieldConfig, "custom"> & { custom?: Custom };
}

/** For plugins that publish no custom field settings. */
export type NoCustom = Record<string, never>;

/** A panel of plugin `Type` whose options and custom field settings are the plugin's own. */
export type PanelOf<Type extends string, Options, Custom> = Omit<
  Panel,
  "type" | "options" | "fieldConfig" | "targets"
> & {
  type: Type;
  options: Options;
  fieldConfig?: FieldConfigSourceOf<Custom>;
  targets?: PrometheusQuery[];
};

export type TimeSeriesPanel = PanelOf<"timeseries", TimeSeries.Options, TimeSeries.FieldConfig>;
export type StatPanel = PanelOf<"stat", Stat.Options, NoCustom>;
export type TablePanel = PanelOf<"table", Table.Options, Table.FieldConfig>;
export type BarGaugePanel = PanelOf<"bargauge", BarGauge.Options, NoCustom>;
export type HeatmapPanel = PanelOf<"heatmap", Heatmap.Options, Heatmap.FieldConfig>;
export type DashboardListPanel = PanelOf<"dashlist", DashboardList.Options, NoCustom>;

/** The panel plugins the dashboards use; another plugin is added here with its published types. */
export type KnownPanel = TimeSeriesPanel | StatPanel | TablePanel | BarGaugePanel | HeatmapPanel | DashboardListPanel;

/** A row that groups known panels. */
export type KnownRow = Omit<RowPanel, "panels"> & { panels: KnownPanel[] };

/** Grafana's dashboard with every panel narrowed to its plugin's published settings. */
export type NarrowedDashboard = Omit<Dashboard, "panels"> & { panels: (KnownPanel | KnownRow)[] };

/** What a dashboard file must satisfy. */
export type DashboardFile = Json<NarrowedDashboard>;

/**
 * Compiles only while a dashboard file is also one of Grafana's dashboards written as JSON: the
 * narrowing above adds constraints and drops none. (Compared in JSON form on both sides: a plugin's
 * options interface is a plain object there, as Grafana's `Record<string, unknown>` expects.)
 */
export function asGrafanaDashboard(dashboard: DashboardFile): Json<Dashboard> {
  return dashboard;
}
