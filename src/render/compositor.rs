//! Host side of `shaders/composite.wgsl`: the pipelines and buffers of the
//! display's one render pass, and [`Compositor::encode`], which records a
//! [`DrawList`] into any colour target view (the window's surface texture
//! or an offscreen texture: one render path for both).

use bytemuck::{Pod, Zeroable};
use glam::Mat4;

use super::mesh::MeshVertex;
use super::overlay::OverlayVertex;
use crate::gpu::{shaders, GpuContext};

pub const STAGE: &str = "composite";
pub const DEPTH_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Depth32Float;

/// Keep in sync with `FrameUniform` in composite.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct FrameUniform {
    pub view_proj: [[f32; 4]; 4],
    pub light: [f32; 4],
    pub target_size: [f32; 2],
    pub _pad0: f32,
    pub _pad1: f32,
}

const _: () = assert!(std::mem::size_of::<FrameUniform>() == 96);

/// Keep in sync with `ImageUniform` in composite.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ImageUniform {
    pub clip_from_uv: [[f32; 4]; 4],
    pub width: u32,
    pub height: u32,
    pub chain_range_db: f32,
    pub gain_db: f32,
    pub range_db: f32,
    pub dim: f32,
    pub opacity: f32,
    pub _pad0: f32,
    pub tgc: [f32; 4],
}

const _: () = assert!(std::mem::size_of::<ImageUniform>() == 112);

/// What one frame draws. Rebuilt every frame; the compositor owns only
/// pipelines and buffers that outlive frames.
#[derive(Default)]
pub struct DrawList {
    pub view_proj: Mat4,
    /// The 3D view's viewport, pixels: x, y, width, height.
    pub viewport_3d: [f32; 4],
    pub opaque: Vec<MeshVertex>,
    pub translucent: Vec<MeshVertex>,
    /// The image as a plane in the 3D view, and as the 2D panel.
    pub image_3d: Option<ImageUniform>,
    pub image_2d: Option<ImageUniform>,
    /// Drawn before the 2D image (panel backgrounds), then after it.
    pub under: Vec<OverlayVertex>,
    pub over: Vec<OverlayVertex>,
}

struct Growable {
    label: &'static str,
    usage: wgpu::BufferUsages,
    buffer: Option<wgpu::Buffer>,
}

impl Growable {
    /// Write `bytes` (queue write; the buffer grows by doubling).
    fn write(&mut self, ctx: &GpuContext, bytes: &[u8]) -> Option<&wgpu::Buffer> {
        if bytes.is_empty() {
            return None;
        }
        let need = (bytes.len() as u64).next_multiple_of(4);
        if self.buffer.as_ref().is_none_or(|b| b.size() < need) {
            self.buffer = Some(ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(self.label),
                size: need.next_power_of_two().max(4096),
                usage: self.usage | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let b = self.buffer.as_ref()?;
        ctx.queue.write_buffer(b, 0, bytes);
        Some(b)
    }
}

pub struct Compositor {
    pub format: wgpu::TextureFormat,
    mesh_opaque: wgpu::RenderPipeline,
    mesh_translucent: wgpu::RenderPipeline,
    image_3d: wgpu::RenderPipeline,
    image_2d: wgpu::RenderPipeline,
    overlay: wgpu::RenderPipeline,
    frame_uniform: wgpu::Buffer,
    frame_group: wgpu::BindGroup,
    image_layout: wgpu::BindGroupLayout,
    image_uniforms: [wgpu::Buffer; 2],
    /// The display buffer the image bind groups point at.
    image: Option<(wgpu::Buffer, [wgpu::BindGroup; 2])>,
    vertices: [Growable; 4],
    depth: Option<(u32, u32, wgpu::TextureView)>,
}

fn uniform_entry(binding: u32, visibility: wgpu::ShaderStages) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Compositor {
    /// Pipelines for colour targets of `format`.
    pub fn new(ctx: &GpuContext, format: wgpu::TextureFormat) -> Compositor {
        let device = &ctx.device;
        let module = shaders::module(device, STAGE);
        let vf = wgpu::ShaderStages::VERTEX | wgpu::ShaderStages::FRAGMENT;
        let frame_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("sonoguide.composite.frame"),
            entries: &[uniform_entry(0, vf)],
        });
        let image_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("sonoguide.composite.image"),
            entries: &[
                uniform_entry(0, vf),
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let layout = |groups: &[Option<&wgpu::BindGroupLayout>]| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("sonoguide.composite"),
                bind_group_layouts: groups,
                immediate_size: 0,
            })
        };
        let frame_only = layout(&[Some(&frame_layout)]);
        let with_image = layout(&[Some(&frame_layout), Some(&image_layout)]);
        let mesh_attrs = wgpu::vertex_attr_array![0 => Float32x3, 1 => Float32x3, 2 => Float32x4];
        let overlay_attrs = wgpu::vertex_attr_array![0 => Float32x2, 1 => Float32x4];
        let mesh_buffers = [Some(wgpu::VertexBufferLayout {
            array_stride: std::mem::size_of::<MeshVertex>() as u64,
            step_mode: wgpu::VertexStepMode::Vertex,
            attributes: &mesh_attrs,
        })];
        let overlay_buffers = [Some(wgpu::VertexBufferLayout {
            array_stride: std::mem::size_of::<OverlayVertex>() as u64,
            step_mode: wgpu::VertexStepMode::Vertex,
            attributes: &overlay_attrs,
        })];
        // (label, layout, entry, vertex buffers, depth test, depth write, blend)
        let pipeline = |label: &str,
                        pl: &wgpu::PipelineLayout,
                        entry: &str,
                        buffers: &[Option<wgpu::VertexBufferLayout>],
                        test: bool,
                        write: bool,
                        blend: bool| {
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(&format!("sonoguide.composite.{label}")),
                layout: Some(pl),
                vertex: wgpu::VertexState {
                    module: &module,
                    entry_point: Some(&format!("vs_{entry}")),
                    compilation_options: Default::default(),
                    buffers,
                },
                primitive: wgpu::PrimitiveState {
                    topology: wgpu::PrimitiveTopology::TriangleList,
                    cull_mode: None,
                    ..Default::default()
                },
                depth_stencil: Some(wgpu::DepthStencilState {
                    format: DEPTH_FORMAT,
                    depth_write_enabled: Some(write),
                    depth_compare: Some(if test {
                        wgpu::CompareFunction::Less
                    } else {
                        wgpu::CompareFunction::Always
                    }),
                    stencil: Default::default(),
                    bias: Default::default(),
                }),
                multisample: Default::default(),
                fragment: Some(wgpu::FragmentState {
                    module: &module,
                    entry_point: Some(&format!("fs_{entry}")),
                    compilation_options: Default::default(),
                    targets: &[Some(wgpu::ColorTargetState {
                        format,
                        blend: blend.then_some(wgpu::BlendState::ALPHA_BLENDING),
                        write_mask: wgpu::ColorWrites::ALL,
                    })],
                }),
                multiview_mask: None,
                cache: None,
            })
        };
        let frame_uniform = ctx.uniform_from("sonoguide.composite.frame", &FrameUniform::zeroed());
        let frame_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("sonoguide.composite.frame"),
            layout: &frame_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: frame_uniform.as_entire_binding(),
            }],
        });
        let vertex = wgpu::BufferUsages::VERTEX;
        Compositor {
            format,
            mesh_opaque: pipeline(
                "mesh",
                &frame_only,
                "mesh",
                &mesh_buffers,
                true,
                true,
                false,
            ),
            // Translucent surfaces are tested against, but do not write,
            // depth, so the image plane shows through them.
            mesh_translucent: pipeline(
                "mesh_translucent",
                &frame_only,
                "mesh",
                &mesh_buffers,
                true,
                false,
                true,
            ),
            image_3d: pipeline("image_3d", &with_image, "image", &[], true, true, true),
            image_2d: pipeline("image_2d", &with_image, "image", &[], false, false, true),
            overlay: pipeline(
                "overlay",
                &frame_only,
                "overlay",
                &overlay_buffers,
                false,
                false,
                true,
            ),
            frame_uniform,
            frame_group,
            image_uniforms: [0, 1]
                .map(|_| ctx.uniform_from("sonoguide.composite.image", &ImageUniform::zeroed())),
            image_layout,
            image: None,
            vertices: [
                ("sonoguide.composite.opaque", vertex),
                ("sonoguide.composite.translucent", vertex),
                ("sonoguide.composite.under", vertex),
                ("sonoguide.composite.over", vertex),
            ]
            .map(|(label, usage)| Growable {
                label,
                usage,
                buffer: None,
            }),
            depth: None,
        }
    }

    /// Point the image draws at `pixels` (the scan-converted RGBA8 display
    /// buffer). Bind groups are rebuilt only when the buffer changes.
    pub fn set_image(&mut self, ctx: &GpuContext, pixels: &wgpu::Buffer) {
        if self.image.as_ref().is_some_and(|(b, _)| b == pixels) {
            return;
        }
        let group = |u: &wgpu::Buffer| {
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("sonoguide.composite.image"),
                layout: &self.image_layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: u.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: pixels.as_entire_binding(),
                    },
                ],
            })
        };
        let groups = [
            group(&self.image_uniforms[0]),
            group(&self.image_uniforms[1]),
        ];
        self.image = Some((pixels.clone(), groups));
    }

    fn depth_view(&mut self, ctx: &GpuContext, w: u32, h: u32) -> wgpu::TextureView {
        if let Some((dw, dh, v)) = &self.depth {
            if (*dw, *dh) == (w, h) {
                return v.clone();
            }
        }
        let tex = ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("sonoguide.composite.depth"),
            size: wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: DEPTH_FORMAT,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            view_formats: &[],
        });
        let v = tex.create_view(&Default::default());
        self.depth = Some((w, h, v.clone()));
        v
    }

    /// Record `list` into `target` (`size` pixels): uniforms and vertices go
    /// up by queue writes, then one render pass.
    pub fn encode(
        &mut self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        target: &wgpu::TextureView,
        size: (u32, u32),
        list: &DrawList,
    ) {
        let (w, h) = (size.0.max(1), size.1.max(1));
        let light = glam::Vec3::new(0.3, -0.5, -0.8).normalize();
        let fu = FrameUniform {
            view_proj: list.view_proj.to_cols_array_2d(),
            light: [light.x, light.y, light.z, 0.35],
            target_size: [w as f32, h as f32],
            _pad0: 0.0,
            _pad1: 0.0,
        };
        ctx.queue
            .write_buffer(&self.frame_uniform, 0, bytemuck::bytes_of(&fu));
        for (u, img) in self
            .image_uniforms
            .iter()
            .zip([&list.image_3d, &list.image_2d])
        {
            if let Some(img) = img {
                ctx.queue.write_buffer(u, 0, bytemuck::bytes_of(img));
            }
        }
        let counts = [
            list.opaque.len(),
            list.translucent.len(),
            list.under.len(),
            list.over.len(),
        ]
        .map(|n| n as u32);
        let [a, b, c, d] = &mut self.vertices;
        let buffers = [
            a.write(ctx, bytemuck::cast_slice(&list.opaque)).cloned(),
            b.write(ctx, bytemuck::cast_slice(&list.translucent))
                .cloned(),
            c.write(ctx, bytemuck::cast_slice(&list.under)).cloned(),
            d.write(ctx, bytemuck::cast_slice(&list.over)).cloned(),
        ];
        let depth = self.depth_view(ctx, w, h);
        let mut pass = enc.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("sonoguide.composite"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: target,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color {
                        r: 0.07,
                        g: 0.08,
                        b: 0.1,
                        a: 1.0,
                    }),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: Some(wgpu::RenderPassDepthStencilAttachment {
                view: &depth,
                depth_ops: Some(wgpu::Operations {
                    load: wgpu::LoadOp::Clear(1.0),
                    store: wgpu::StoreOp::Discard,
                }),
                stencil_ops: None,
            }),
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        pass.set_bind_group(0, &self.frame_group, &[]);
        let vertices = |pass: &mut wgpu::RenderPass, pipeline: &wgpu::RenderPipeline, i: usize| {
            if let Some(buf) = &buffers[i] {
                pass.set_pipeline(pipeline);
                pass.set_vertex_buffer(0, buf.slice(..));
                pass.draw(0..counts[i], 0..1);
            }
        };
        let image = |pass: &mut wgpu::RenderPass, pipeline: &wgpu::RenderPipeline, i: usize| {
            if let (Some(_), Some((_, groups))) = ([&list.image_3d, &list.image_2d][i], &self.image)
            {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(1, &groups[i], &[]);
                pass.draw(0..6, 0..1);
            }
        };
        let [x, y, vw, vh] = list.viewport_3d;
        if vw >= 1.0 && vh >= 1.0 {
            pass.set_viewport(x, y, vw, vh, 0.0, 1.0);
            vertices(&mut pass, &self.mesh_opaque, 0);
            image(&mut pass, &self.image_3d, 0);
            vertices(&mut pass, &self.mesh_translucent, 1);
        }
        pass.set_viewport(0.0, 0.0, w as f32, h as f32, 0.0, 1.0);
        vertices(&mut pass, &self.overlay, 2);
        image(&mut pass, &self.image_2d, 1);
        vertices(&mut pass, &self.overlay, 3);
    }
}
